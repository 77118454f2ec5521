-- The user's rows ($1) only: each mapped token takes its tombstone there, and stays in
-- other users' rows (a value two users share is erased for the one who asked).
UPDATE user_logins u
SET masked_ip = coalesce((SELECT m.new FROM ingestor_token_map m WHERE m.old = u.masked_ip),
                         u.masked_ip),
    masked_device_id = coalesce(
        (SELECT m.new FROM ingestor_token_map m WHERE m.old = u.masked_device_id),
        u.masked_device_id)
WHERE u.user_id = $1
  AND (u.masked_ip IN (SELECT old FROM ingestor_token_map)
       OR u.masked_device_id IN (SELECT old FROM ingestor_token_map));
