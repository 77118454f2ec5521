UPDATE ingestor_rejects
SET body = $2, pii_tokens = $3, body_digest = coalesce($4, body_digest), user_digest = $5
WHERE message_id = $1;
