DELETE FROM ingestor_rekey_state WHERE mask_key_id = $1;
