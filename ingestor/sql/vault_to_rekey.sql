-- The next batch of vault rows not yet under the new HMAC key. SKIP LOCKED: two rekey runs
-- at once share the work instead of waiting on each other.
SELECT token, field, sealed, key_id, first_seen
FROM pii_vault
WHERE mask_key_id <> $1
ORDER BY token
LIMIT $2
FOR UPDATE SKIP LOCKED;
