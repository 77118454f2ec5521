SELECT name FROM ingestor_migrations;
