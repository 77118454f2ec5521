-- forget's ledger entries: (digest, tombstone, the user id when it is known: its bucket).
WITH entries AS (
    INSERT INTO ingestor_erasures (digest, tombstone, mask_key_id)
    SELECT e.digest, e.tombstone, $4
    FROM unnest($1::varchar[], $2::varchar[]) AS e(digest, tombstone)
    ON CONFLICT (digest) DO NOTHING
)
INSERT INTO ingestor_erased_buckets (bucket)
SELECT DISTINCT ingestor_user_bucket(u) FROM unnest($3::text[]) AS u
WHERE u IS NOT NULL
ON CONFLICT (bucket) DO NOTHING;
