-- The database sets actor (session_user), at, the chain columns, and moves the tokens to
-- pii_audit_tokens (the pii_audit_append trigger).
INSERT INTO pii_reveal_audit (claimed_actor, action, tokens, reason, detail)
VALUES ($1, $2, $3::varchar[], $4, $5)
RETURNING id, at;
