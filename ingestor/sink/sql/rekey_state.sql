SELECT mask_key_id, phase, position FROM ingestor_rekey_state;
