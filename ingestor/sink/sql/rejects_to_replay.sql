-- The next batch of replayable rejects (optionally of one reason), after `$2`: those with
-- a sealed original body, and valid rows the database refused (their body is the row).
SELECT message_id, body, body_kind, body_digest, sealed_body, key_id, sent_at, receive_count
FROM ingestor_rejects
WHERE (sealed_body IS NOT NULL OR body_kind = 'row')
  AND ($1::varchar IS NULL OR reason_code = $1)
  AND message_id > $2
ORDER BY message_id
LIMIT $3;
