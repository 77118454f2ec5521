-- Which of these tokens a row or a reject still holds.
SELECT DISTINCT token FROM (
    SELECT masked_ip AS token FROM user_logins WHERE masked_ip = ANY($1::varchar[])
    UNION ALL
    SELECT masked_device_id FROM user_logins WHERE masked_device_id = ANY($1::varchar[])
    UNION ALL
    SELECT t.token FROM ingestor_rejects r, unnest(r.pii_tokens) AS t(token)
    WHERE r.pii_tokens && $1::varchar[] AND t.token = ANY($1::varchar[])
) used;
