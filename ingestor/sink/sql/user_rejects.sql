-- The user's rejects: by the keyed digest of their user_id ($1), and those stored before
-- rejects had one (migration 0004) by the user id as JSON writes it ($2) in their kept
-- body, which the caller confirms by parsing it. (Not body::jsonb ->> 'user_id': a body may
-- hold a "\u0000" escape, which PostgreSQL's json types refuse to read.)
SELECT message_id, body, pii_tokens, user_digest
FROM ingestor_rejects
WHERE user_digest = $1
   OR (user_digest IS NULL AND body IS NOT NULL AND strpos(body, $2) > 0)
ORDER BY message_id
FOR UPDATE;
