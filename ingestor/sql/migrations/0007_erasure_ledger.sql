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
