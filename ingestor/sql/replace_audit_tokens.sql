-- Earlier audit rows that name a mapped token name its replacement instead: an erased
-- token left in the audit trail would let the HMAC key's holders test guesses against it,
-- and after a rotation the old key's tokens should be gone from every table.
UPDATE pii_reveal_audit a
SET tokens = ARRAY(
    SELECT coalesce(m.new, t.token)
    FROM unnest(a.tokens) WITH ORDINALITY AS t(token, position)
    LEFT JOIN ingestor_token_map m ON m.old = t.token
    ORDER BY t.position
)
WHERE a.tokens && (SELECT array_agg(old) FROM ingestor_token_map);
