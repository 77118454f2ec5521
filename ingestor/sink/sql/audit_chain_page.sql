-- The audit trail in chain order, a page after sequence number $1.
SELECT id, seq, at, actor, claimed_actor, action, reason, detail, token_count, prev_hash, hash
FROM pii_reveal_audit
WHERE seq > $1
ORDER BY seq
LIMIT $2;
