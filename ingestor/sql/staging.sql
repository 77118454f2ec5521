-- Per connection: the COPY target. Its columns mirror user_logins (LIKE), so a value the
-- target would refuse is refused here too; ON COMMIT DELETE ROWS empties it every batch.
CREATE TEMP TABLE IF NOT EXISTS ingestor_staging (LIKE user_logins) ON COMMIT DELETE ROWS;
