-- Rejects whose redacted body may be the user's: it holds the user id as JSON writes it.
-- The caller parses each body to confirm. Not body::jsonb ->> 'user_id' here: a body may
-- hold a "\u0000" escape (a reject for a control character), which PostgreSQL's json
-- types refuse to read, and one such reject would fail every erasure by user id.
SELECT message_id, body, pii_tokens
FROM ingestor_rejects
WHERE body IS NOT NULL AND cardinality(pii_tokens) > 0 AND strpos(body, $1) > 0;
