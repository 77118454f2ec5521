-- Rewrite the tokens of the rows in blocks [$1, $2) of user_logins (a TID range scan):
-- one pass over the table for the whole rotation, one transaction per range. A row
-- rewritten moves to a later block, where its new tokens match nothing in the map.
UPDATE user_logins u
SET masked_ip = coalesce(
        (SELECT m.new FROM ingestor_rekey_map m WHERE m.old = u.masked_ip), u.masked_ip),
    masked_device_id = coalesce(
        (SELECT m.new FROM ingestor_rekey_map m WHERE m.old = u.masked_device_id),
        u.masked_device_id)
WHERE u.ctid >= format('(%s,0)', $1::bigint)::tid
  AND u.ctid < format('(%s,0)', $2::bigint)::tid
  AND (u.masked_ip IN (SELECT old FROM ingestor_rekey_map)
       OR u.masked_device_id IN (SELECT old FROM ingestor_rekey_map));
