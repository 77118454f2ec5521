-- Rejects whose redacted body holds any of the mapped tokens.
SELECT message_id, body, pii_tokens, sealed_body, key_id, user_digest
FROM ingestor_rejects
WHERE pii_tokens && (SELECT array_agg(old) FROM ingestor_token_map)
ORDER BY message_id
FOR UPDATE;
