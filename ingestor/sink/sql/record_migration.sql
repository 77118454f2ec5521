INSERT INTO ingestor_migrations(name) VALUES ($1);
