-- Move the next $2 mapped vault rows to their new tokens (with the value sealed to the new
-- token; a map written before values were bound to tokens has none, and the bare value
-- moves as it is) and drop them from the map; returns how many map rows this took (0: the
-- vault is done).
WITH page AS (
    DELETE FROM ingestor_rekey_map
    WHERE old IN (SELECT old FROM ingestor_rekey_map ORDER BY old LIMIT $2)
    RETURNING old, new, sealed
),
moved AS (
    DELETE FROM pii_vault v USING page
    WHERE v.token = page.old
    RETURNING page.new, v.field, coalesce(page.sealed, v.sealed) AS sealed, v.key_id, v.first_seen
),
inserted AS (
    INSERT INTO pii_vault (token, field, sealed, key_id, mask_key_id, first_seen)
    SELECT new, field, sealed, key_id, $1, first_seen FROM moved
    ON CONFLICT (token) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM page;
