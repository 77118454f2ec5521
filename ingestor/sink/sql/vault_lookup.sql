SELECT token, field, sealed, key_id, mask_key_id FROM pii_vault WHERE token = ANY($1::varchar[]);
