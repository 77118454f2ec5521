-- The first service to start records its masking key; later ones find the record.
INSERT INTO ingestor_masking_key (mask_key_id) VALUES ($1) ON CONFLICT (only_one) DO NOTHING;
