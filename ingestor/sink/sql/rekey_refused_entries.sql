-- Vault entries a finished rotation left under another key than $1: ones that did not
-- match their tokens, or were made with a key other than the one given.
SELECT count(*) FROM pii_vault WHERE mask_key_id <> $1;
