-- Every token standing in a user's rows (tombstones excluded).
SELECT DISTINCT token FROM (
    SELECT masked_ip AS token FROM user_logins WHERE user_id = $1
    UNION ALL
    SELECT masked_device_id FROM user_logins WHERE user_id = $1
) t
WHERE token IS NOT NULL AND token NOT LIKE 'erased:%';
