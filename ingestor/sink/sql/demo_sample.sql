SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date
FROM user_logins
ORDER BY message_id
LIMIT $1;
