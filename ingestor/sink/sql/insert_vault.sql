-- One row per distinct value, the first time it is seen; later ones (the same token) add
-- nothing. Column-wise arrays: one statement per batch, not one per value.
INSERT INTO pii_vault (token, field, sealed, key_id, mask_key_id)
SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::bytea[], $4::varchar[], $5::varchar[])
ORDER BY 1
ON CONFLICT (token) DO NOTHING;
