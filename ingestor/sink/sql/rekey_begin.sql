INSERT INTO ingestor_rekey_state (mask_key_id, phase) VALUES ($1, 'map');
