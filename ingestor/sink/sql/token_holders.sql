-- Whose rows hold a mapped token: (user_id, token), one pass over user_logins.
SELECT DISTINCT u.user_id, t.token
FROM user_logins u,
     LATERAL (VALUES (u.masked_ip), (u.masked_device_id)) AS t(token)
WHERE (u.masked_ip IN (SELECT old FROM ingestor_token_map)
       OR u.masked_device_id IN (SELECT old FROM ingestor_token_map))
  AND t.token IN (SELECT old FROM ingestor_token_map);
