UPDATE ingestor_rekey_state SET phase = $2, position = $3 WHERE mask_key_id = $1;
