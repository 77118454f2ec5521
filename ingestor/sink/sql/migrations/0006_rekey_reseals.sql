-- Vault entries are sealed bound to their token (vault.py: field, token and value), so a
-- rotation seals each value again for its new token: the map carries the new sealed bytes
-- from the map phase (which opens every entry) to the vault phase.
ALTER TABLE ingestor_rekey_map ADD COLUMN IF NOT EXISTS sealed bytea;
