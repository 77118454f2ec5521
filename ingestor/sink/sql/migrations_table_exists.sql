SELECT to_regclass('ingestor_migrations') IS NOT NULL;
