-- Every occurrence of a mapped token in user_logins takes its new value: one pass over the
-- table, both columns in one statement (a row may hold two mapped tokens).
UPDATE user_logins u
SET masked_ip = coalesce((SELECT m.new FROM ingestor_token_map m WHERE m.old = u.masked_ip),
                         u.masked_ip),
    masked_device_id = coalesce(
        (SELECT m.new FROM ingestor_token_map m WHERE m.old = u.masked_device_id),
        u.masked_device_id)
WHERE u.masked_ip IN (SELECT old FROM ingestor_token_map)
   OR u.masked_device_id IN (SELECT old FROM ingestor_token_map);
