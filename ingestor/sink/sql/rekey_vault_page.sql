-- The next vault rows still under another key than $1, after token $2.
SELECT token, field, sealed, key_id, mask_key_id
FROM pii_vault
WHERE mask_key_id <> $1 AND token > $2
ORDER BY token
LIMIT $3;
