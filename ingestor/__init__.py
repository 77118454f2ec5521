"""ingestor: load login events from AWS SQS into PostgreSQL with the PII masked."""

__version__ = "0.1.0"
