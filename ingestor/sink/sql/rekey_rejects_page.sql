-- The next rejects after message id $1 that hold tokens or digests to redo.
SELECT message_id, body, body_kind, pii_tokens, sealed_body, key_id, user_digest
FROM ingestor_rejects
WHERE message_id > $1
  AND (cardinality(pii_tokens) > 0 OR sealed_body IS NOT NULL OR body_kind = 'row'
       OR user_digest IS NOT NULL)
ORDER BY message_id
LIMIT $2;
