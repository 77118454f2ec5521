-- The PII vault: one row per distinct (field, value), keyed by the token that stands for
-- the value in user_logins and the rejects. `sealed` is the value sealed to the vault's
-- public key `key_id`; only the holder of the private key can open it. `mask_key_id` names
-- the HMAC key the token was made with (rekey moves rows from one to the next).
CREATE TABLE IF NOT EXISTS pii_vault(
    token           varchar(256) PRIMARY KEY,
    field           varchar(16) NOT NULL CHECK (field IN ('ip', 'device_id')),
    sealed          bytea NOT NULL,
    key_id          varchar(32) NOT NULL,
    mask_key_id     varchar(32) NOT NULL,
    first_seen      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pii_vault_mask_key_id_idx ON pii_vault (mask_key_id);

-- Who opened or erased which tokens, when and why. Written in the same transaction as the
-- read (reveal) or the change (forget, rekey, replay): no access without its audit row.
CREATE TABLE IF NOT EXISTS pii_reveal_audit(
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,
    action          varchar(16) NOT NULL,
    tokens          varchar(256)[] NOT NULL,
    reason          text NOT NULL,
    detail          text
);
CREATE INDEX IF NOT EXISTS pii_reveal_audit_tokens_idx ON pii_reveal_audit USING gin (tokens);

-- Rejects: the tokens in the redacted body (for erasure and rotation), and the original
-- body sealed to the vault key (for replay after a rule fix), when the vault is on.
ALTER TABLE ingestor_rejects ADD COLUMN IF NOT EXISTS pii_tokens varchar(256)[] NOT NULL DEFAULT '{}';
ALTER TABLE ingestor_rejects ADD COLUMN IF NOT EXISTS sealed_body bytea;
ALTER TABLE ingestor_rejects ADD COLUMN IF NOT EXISTS key_id varchar(32);
CREATE INDEX IF NOT EXISTS ingestor_rejects_pii_tokens_idx ON ingestor_rejects USING gin (pii_tokens);

-- Rejects stored before this migration: their token lists, from their redacted bodies
-- (tokens are 64 lowercase hex digits; a stray match is harmless: no map holds it).
UPDATE ingestor_rejects
SET pii_tokens = ARRAY(
    SELECT DISTINCT m[1] FROM regexp_matches(body, '"([0-9a-f]{64})"', 'g') AS m
)
WHERE body IS NOT NULL AND cardinality(pii_tokens) = 0;
