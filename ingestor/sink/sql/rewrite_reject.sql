UPDATE ingestor_rejects
SET body = $2, pii_tokens = $3, sealed_body = $4, body_digest = $5
WHERE message_id = $1;
