-- Earlier audit rows that name a mapped token name its replacement instead: an erased
-- token left in the audit trail would let the HMAC key's holders test guesses against it,
-- and after a rotation the old key's tokens should be gone from every table. The rows
-- themselves are append-only: what they name lives in pii_audit_tokens.
UPDATE pii_audit_tokens t
SET token = m.new
FROM ingestor_token_map m
WHERE t.token = m.old;
