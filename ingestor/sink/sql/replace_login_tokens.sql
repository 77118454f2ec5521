-- Every occurrence of a mapped token in user_logins takes its new value: one pass over the
-- table, both columns in one statement (a row may hold two mapped tokens). With a user id
-- ($1), that user's rows only: a value two users share is erased for the one who asked.
UPDATE user_logins u
SET masked_ip = coalesce((SELECT m.new FROM ingestor_token_map m WHERE m.old = u.masked_ip),
                         u.masked_ip),
    masked_device_id = coalesce(
        (SELECT m.new FROM ingestor_token_map m WHERE m.old = u.masked_device_id),
        u.masked_device_id)
WHERE ($1::varchar IS NULL OR u.user_id = $1)
  AND (u.masked_ip IN (SELECT old FROM ingestor_token_map)
       OR u.masked_device_id IN (SELECT old FROM ingestor_token_map));
