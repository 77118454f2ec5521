-- The audit trail becomes append-only and hash-chained, and names who did what by the
-- database's own account of it.
--
-- * `actor` is the session_user, set by the database, whatever the client sends; what the
--   command was told (--actor, else the OS user) goes beside it in `claimed_actor`.
-- * The tokens an audit row names live in pii_audit_tokens: erasure and key rotation must
--   replace them (an erased token left anywhere would let the masking key's holders test
--   guesses against it), and the trail itself is never updated. An insert may still name
--   them in `tokens`: the trigger moves them there and counts them in `token_count`.
-- * Each row carries `seq` (1, 2, ...), the previous row's hash and its own: sha256 over
--   its fields (pii_audit_hash). `ingestor audit verify` recomputes the chain.
-- * UPDATE, DELETE and TRUNCATE are refused by triggers, for every role but one that can
--   drop them (the tables' owner, a superuser): the chain shows what such a role changed.
CREATE TABLE IF NOT EXISTS pii_audit_tokens(
    audit_id        bigint NOT NULL,
    position        integer NOT NULL,
    token           varchar(256) NOT NULL,
    PRIMARY KEY (audit_id, position)
);
CREATE INDEX IF NOT EXISTS pii_audit_tokens_token_idx ON pii_audit_tokens (token);

ALTER TABLE pii_reveal_audit ADD COLUMN IF NOT EXISTS claimed_actor text;
ALTER TABLE pii_reveal_audit ADD COLUMN IF NOT EXISTS token_count integer NOT NULL DEFAULT 0;
ALTER TABLE pii_reveal_audit ADD COLUMN IF NOT EXISTS seq bigint;
ALTER TABLE pii_reveal_audit ADD COLUMN IF NOT EXISTS prev_hash varchar(64);
ALTER TABLE pii_reveal_audit ADD COLUMN IF NOT EXISTS hash varchar(64);
ALTER TABLE pii_reveal_audit ALTER COLUMN actor SET DEFAULT session_user;

-- The canonical form of a row: each field as <length>:<text>, in this order; the time in
-- UTC to the microsecond. (ingestor/audit.py computes the same to verify.)
CREATE OR REPLACE FUNCTION pii_audit_hash(
    prev text, seq bigint, at timestamptz, actor text, claimed_actor text, action text,
    reason text, detail text, token_count integer
) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(string_agg(length(f)::text || ':' || f, '' ORDER BY i), 'UTF8')), 'hex')
    FROM unnest(ARRAY[
        prev, seq::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), actor,
        coalesce(claimed_actor, ''), action, reason, coalesce(detail, ''), token_count::text
    ]) WITH ORDINALITY AS x(f, i)
$$;

-- Rows written before: their tokens move to the side table, the actor they recorded (the
-- OS user or --actor) becomes their claimed actor, and they are chained in id order.
INSERT INTO pii_audit_tokens (audit_id, position, token)
SELECT a.id, t.position, t.token
FROM pii_reveal_audit a, unnest(a.tokens) WITH ORDINALITY AS t(token, position)
ON CONFLICT DO NOTHING;
UPDATE pii_reveal_audit
SET claimed_actor = actor, token_count = cardinality(tokens), tokens = '{}'
WHERE seq IS NULL;

DO $$
DECLARE
    r record;
    previous text := '';
    n bigint := 0;
BEGIN
    FOR r IN SELECT * FROM pii_reveal_audit ORDER BY id LOOP
        n := n + 1;
        UPDATE pii_reveal_audit
        SET seq = n, prev_hash = previous,
            hash = pii_audit_hash(previous, n, r.at, r.actor, r.claimed_actor, r.action,
                                  r.reason, r.detail, r.token_count)
        WHERE id = r.id
        RETURNING hash INTO previous;
    END LOOP;
END $$;

ALTER TABLE pii_reveal_audit ALTER COLUMN seq SET NOT NULL;
ALTER TABLE pii_reveal_audit ALTER COLUMN prev_hash SET NOT NULL;
ALTER TABLE pii_reveal_audit ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS pii_reveal_audit_seq_key ON pii_reveal_audit (seq);

CREATE OR REPLACE FUNCTION pii_audit_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last record;
BEGIN
    -- One writer at a time extends the chain (until its transaction ends).
    PERFORM pg_advisory_xact_lock(7596575833398589812);
    SELECT a.seq, a.hash INTO last FROM pii_reveal_audit a ORDER BY a.seq DESC LIMIT 1;
    INSERT INTO pii_audit_tokens (audit_id, position, token)
    SELECT NEW.id, t.position, t.token
    FROM unnest(NEW.tokens) WITH ORDINALITY AS t(token, position);
    NEW.actor := session_user;
    NEW.at := now();
    NEW.token_count := cardinality(NEW.tokens);
    NEW.tokens := '{}';
    NEW.seq := coalesce(last.seq, 0) + 1;
    NEW.prev_hash := coalesce(last.hash, '');
    NEW.hash := pii_audit_hash(NEW.prev_hash, NEW.seq, NEW.at, NEW.actor, NEW.claimed_actor,
                               NEW.action, NEW.reason, NEW.detail, NEW.token_count);
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION pii_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pii_reveal_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER IF EXISTS pii_audit_append ON pii_reveal_audit;
CREATE TRIGGER pii_audit_append BEFORE INSERT ON pii_reveal_audit
    FOR EACH ROW EXECUTE FUNCTION pii_audit_append();
DROP TRIGGER IF EXISTS pii_audit_append_only ON pii_reveal_audit;
CREATE TRIGGER pii_audit_append_only BEFORE UPDATE OR DELETE ON pii_reveal_audit
    FOR EACH ROW EXECUTE FUNCTION pii_audit_refuse();
DROP TRIGGER IF EXISTS pii_audit_no_truncate ON pii_reveal_audit;
CREATE TRIGGER pii_audit_no_truncate BEFORE TRUNCATE ON pii_reveal_audit
    FOR EACH STATEMENT EXECUTE FUNCTION pii_audit_refuse();

-- The trail as a person reads it: each row with the tokens it names (as they stand now:
-- erased ones as their tombstones, rotated ones under the new key).
CREATE OR REPLACE VIEW pii_audit_trail AS
SELECT a.seq, a.at, a.actor, a.claimed_actor, a.action, a.reason, a.detail,
       ARRAY(SELECT t.token FROM pii_audit_tokens t WHERE t.audit_id = a.id
             ORDER BY t.position)::varchar(256)[] AS tokens,
       a.token_count, a.hash
FROM pii_reveal_audit a;
