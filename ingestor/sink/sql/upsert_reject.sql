-- A reject that forget erased (its body, or a token of it) stays as erased when its
-- message comes back: what the message carries again was erased.
INSERT INTO ingestor_rejects (
    message_id, reason_code, reason, body, body_kind, body_bytes, body_digest,
    sent_at, receive_count, pii_tokens, sealed_body, key_id, user_digest
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (message_id) DO UPDATE SET
    reason_code = EXCLUDED.reason_code,
    reason = EXCLUDED.reason,
    body = EXCLUDED.body,
    body_kind = EXCLUDED.body_kind,
    body_bytes = EXCLUDED.body_bytes,
    body_digest = EXCLUDED.body_digest,
    sent_at = EXCLUDED.sent_at,
    receive_count = EXCLUDED.receive_count,
    pii_tokens = EXCLUDED.pii_tokens,
    sealed_body = EXCLUDED.sealed_body,
    key_id = EXCLUDED.key_id,
    user_digest = EXCLUDED.user_digest,
    rejected_at = now()
WHERE ingestor_rejects.body_kind <> 'erased'
  AND NOT EXISTS (SELECT 1 FROM unnest(ingestor_rejects.pii_tokens) AS t(token)
                  WHERE t.token LIKE 'erased:%');
