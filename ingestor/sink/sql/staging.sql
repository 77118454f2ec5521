-- Per connection: the COPY target, with exactly the columns ingestor loads, typed as in
-- user_logins (so a value the target refuses is refused here too). Only these columns:
-- other columns of user_logins (an id, a loaded_at) keep their own defaults. ON COMMIT
-- DELETE ROWS empties it at every commit.
CREATE TEMP TABLE IF NOT EXISTS ingestor_staging ON COMMIT DELETE ROWS AS
SELECT message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
       create_date
FROM user_logins
WITH NO DATA;
