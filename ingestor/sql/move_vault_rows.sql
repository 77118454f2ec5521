-- Re-key vault rows: the same sealed value under its new token.
WITH moved AS (
    DELETE FROM pii_vault v
    USING ingestor_token_map m
    WHERE v.token = m.old
    RETURNING m.new, v.field, v.sealed, v.key_id, v.first_seen
)
INSERT INTO pii_vault (token, field, sealed, key_id, mask_key_id, first_seen)
SELECT new, field, sealed, key_id, $1, first_seen FROM moved
ON CONFLICT (token) DO NOTHING;
