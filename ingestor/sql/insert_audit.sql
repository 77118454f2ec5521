INSERT INTO pii_reveal_audit (actor, action, tokens, reason, detail)
VALUES ($1, $2, $3::varchar[], $4, $5)
RETURNING id, at;
