CREATE TABLE IF NOT EXISTS ingestor_migrations(
    name        text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
