SELECT mask_key_id, recorded_at FROM ingestor_masking_key;
