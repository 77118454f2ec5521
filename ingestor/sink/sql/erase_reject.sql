-- A reject of a user who asked to be erased: nothing of its body is kept, its tokens
-- become tombstones, its keyed digest a random one; its user digest stays, so the same
-- message loaded again is known to be erased.
UPDATE ingestor_rejects
SET body = NULL, body_kind = 'erased', pii_tokens = $2, sealed_body = NULL, key_id = NULL,
    body_digest = $3
WHERE message_id = $1;
