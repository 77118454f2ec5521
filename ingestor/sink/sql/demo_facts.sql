-- The demo's summary of user_logins: rows, and how many distinct tokens they hold; and
-- how many rows and rejects are keyed by an SNS MessageId.
SELECT count(*) AS rows,
       count(DISTINCT message_id) AS messages,
       count(masked_ip) AS ips,
       count(DISTINCT masked_ip) AS distinct_ips,
       count(masked_device_id) AS devices,
       count(DISTINCT masked_device_id) AS distinct_devices,
       (SELECT count(*) FROM ingestor_rejects) AS rejects,
       count(*) FILTER (WHERE message_id LIKE 'sns:%')
           + (SELECT count(*) FROM ingestor_rejects WHERE message_id LIKE 'sns:%') AS sns_keys
FROM user_logins;
