-- The analysts' table, exactly as they have it; created only when missing.
CREATE TABLE IF NOT EXISTS user_logins(
    user_id             varchar(128),
    device_type         varchar(32),
    masked_ip           varchar(256),
    masked_device_id    varchar(256),
    locale              varchar(32),
    app_version         integer,
    create_date         date
);

-- Idempotent loading: a redelivered SQS message (same MessageId) replaces its row.
-- Rows loaded before ingestor have NULL here, which the unique index allows. A unique
-- index on a partitioned table must hold its partition key: migrate gives a table
-- range-partitioned by create_date one on (message_id, create_date) before this runs
-- (sink/sql/partitioned_key.sql), and PostgreSQL refuses this one there even when its
-- name is taken.
ALTER TABLE user_logins ADD COLUMN IF NOT EXISTS message_id varchar(128);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'user_logins'::regclass) THEN
        CREATE UNIQUE INDEX IF NOT EXISTS user_logins_message_id_key ON user_logins (message_id);
    END IF;
END $$;

-- Messages that break a rule, with the reason. `body` is the JSON object with its PII
-- fields masked; a body that is not a JSON object is kept only as kind, size and digest.
CREATE TABLE IF NOT EXISTS ingestor_rejects(
    message_id      varchar(128) PRIMARY KEY,
    reason_code     varchar(64) NOT NULL,
    reason          text NOT NULL,
    body            text,
    body_kind       varchar(32) NOT NULL,
    body_bytes      integer NOT NULL,
    body_digest     varchar(64) NOT NULL,
    sent_at         timestamptz NOT NULL,
    receive_count   integer NOT NULL,
    rejected_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ingestor_rejects_reason_code_idx ON ingestor_rejects (reason_code);
