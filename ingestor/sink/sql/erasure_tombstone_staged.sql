-- Staged rows whose user's value was erased take that value's tombstone before the merge.
UPDATE ingestor_staging s
SET masked_ip = coalesce(h.ip, s.masked_ip),
    masked_device_id = coalesce(h.device_id, s.masked_device_id)
FROM unnest($1::varchar[], $2::varchar[], $3::varchar[]) AS h(message_id, ip, device_id)
WHERE s.message_id = h.message_id;
