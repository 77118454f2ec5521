-- Audit rows name tokens under the new key too: the old key is being retired.
UPDATE pii_audit_tokens t
SET token = m.new
FROM ingestor_rekey_map m
WHERE t.token = m.old;
