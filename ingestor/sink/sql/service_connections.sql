-- Connections of running ingestor services to this database (the service's pool names
-- itself `ingestor`; the custody commands do not).
SELECT count(*) FROM pg_stat_activity
WHERE application_name = 'ingestor' AND datname = current_database() AND pid <> pg_backend_pid();
