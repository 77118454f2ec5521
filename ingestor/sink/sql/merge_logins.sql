-- Upsert the staged batch by message_id. ORDER BY takes row locks in key order, so
-- concurrent writers (or consumers) merging overlapping batches cannot deadlock.
-- xmax = 0 on the returned row means it was inserted, not updated. A message that was
-- rejected in an earlier delivery (a constraint since dropped) leaves the rejects table:
-- every message is in one table, once. A tombstone in the row a redelivery replaces
-- stays: that value was erased (forget), whatever the redelivered message carries.
WITH merged AS (
    INSERT INTO user_logins AS t (
        message_id, user_id, device_type, masked_ip, masked_device_id,
        locale, app_version, create_date
    )
    SELECT message_id, user_id, device_type, masked_ip, masked_device_id,
           locale, app_version, create_date
    FROM ingestor_staging
    ORDER BY message_id
    ON CONFLICT (message_id) DO UPDATE SET
        user_id = EXCLUDED.user_id,
        device_type = EXCLUDED.device_type,
        masked_ip = CASE WHEN t.masked_ip LIKE 'erased:%' THEN t.masked_ip
                         ELSE EXCLUDED.masked_ip END,
        masked_device_id = CASE WHEN t.masked_device_id LIKE 'erased:%' THEN t.masked_device_id
                                ELSE EXCLUDED.masked_device_id END,
        locale = EXCLUDED.locale,
        app_version = EXCLUDED.app_version,
        create_date = EXCLUDED.create_date
    RETURNING (t.xmax = 0) AS inserted
),
unrejected AS (
    DELETE FROM ingestor_rejects r
    USING ingestor_staging s
    WHERE r.message_id = s.message_id
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS replaced
FROM merged;
