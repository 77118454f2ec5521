-- How many erasures are on record: a running service that sees this grow forgets what it
-- remembers as vaulted.
SELECT count(*) FROM pii_reveal_audit WHERE action = 'forget';
