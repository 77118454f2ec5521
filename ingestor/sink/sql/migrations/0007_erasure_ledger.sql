-- The erasure ledger: what `forget` erased, so that a later load of a message carrying an
-- erased value (SQS redelivering it, a DLQ drained later, the producer sending it again)
-- lands with the tombstone and is not vaulted again. Never plaintext, never the token: a
-- keyed digest of (the user's keyed digest, the token) under the masking key, and the
-- tombstone that token became for that user.
CREATE TABLE IF NOT EXISTS ingestor_erasures(
    digest          varchar(64) PRIMARY KEY,
    tombstone       varchar(256) NOT NULL,
    mask_key_id     varchar(32) NOT NULL,   -- the masking key of the digest
    erased_at       timestamptz NOT NULL DEFAULT now()
);

-- 16 bits of a hash of the user ids with an erasure: the writer computes the keyed digests
-- only for the rows of a batch whose user falls in one of these (many users share each;
-- they say nothing of a value).
CREATE TABLE IF NOT EXISTS ingestor_erased_buckets(
    bucket          integer PRIMARY KEY
);

CREATE OR REPLACE FUNCTION ingestor_user_bucket(user_id text) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ('x' || left(encode(sha256(convert_to(user_id, 'UTF8')), 'hex'), 4))::bit(16)::integer
$$;

-- The writer's look at the ledger, one round trip per batch: it waits for a forget under
-- way (writers hold this lock shared, forget exclusively), then, in queries that see what
-- committed meanwhile (a VOLATILE function's queries take their own snapshots), returns
-- the staged rows whose user falls in an erased user's bucket. While nothing was ever
-- erased it does not touch the staging table at all.
CREATE OR REPLACE FUNCTION ingestor_erasure_candidates(lock_key bigint)
RETURNS TABLE (message_id varchar, user_id varchar, masked_ip varchar, masked_device_id varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(lock_key);
    IF EXISTS (SELECT 1 FROM ingestor_erased_buckets) THEN
        RETURN QUERY
        SELECT s.message_id, s.user_id, s.masked_ip, s.masked_device_id
        FROM ingestor_staging s
        WHERE ingestor_user_bucket(s.user_id) IN (SELECT b.bucket FROM ingestor_erased_buckets b);
    END IF;
END $$;
