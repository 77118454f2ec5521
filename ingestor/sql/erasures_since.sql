-- Erasures recorded after audit row $1 (a running service drops those tokens from its
-- memory of what is vaulted, so a value seen again is vaulted again).
SELECT id, tokens FROM pii_reveal_audit WHERE action = 'forget' AND id > $1 ORDER BY id;
