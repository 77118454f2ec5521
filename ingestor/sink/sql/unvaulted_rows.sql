-- Rows whose tokens have no vault entry (loaded before the vault was on): rekey cannot
-- recompute them. Tombstones of erased values are not counted.
SELECT count(*) FROM user_logins u
WHERE (u.masked_ip IS NOT NULL AND u.masked_ip NOT LIKE 'erased:%'
       AND NOT EXISTS (SELECT 1 FROM pii_vault v WHERE v.token = u.masked_ip))
   OR (u.masked_device_id IS NOT NULL AND u.masked_device_id NOT LIKE 'erased:%'
       AND NOT EXISTS (SELECT 1 FROM pii_vault v WHERE v.token = u.masked_device_id));
