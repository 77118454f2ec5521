-- The rotation is done: its state goes, and the record names the new key as the one the
-- tables' tokens are made with.
WITH finished AS (
    DELETE FROM ingestor_rekey_state WHERE mask_key_id = $1 RETURNING mask_key_id
)
INSERT INTO ingestor_masking_key (mask_key_id)
SELECT mask_key_id FROM finished
ON CONFLICT (only_one) DO UPDATE SET mask_key_id = EXCLUDED.mask_key_id, recorded_at = now();
