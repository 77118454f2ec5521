-- Key rotation's work, kept across runs so an interrupted `rekey` resumes: the map from
-- each old token to its token under the new key, and how far the rotation has got.
CREATE TABLE IF NOT EXISTS ingestor_rekey_map(
    old             varchar(256) PRIMARY KEY,
    new             varchar(256) NOT NULL
);

CREATE TABLE IF NOT EXISTS ingestor_rekey_state(
    mask_key_id     varchar(32) PRIMARY KEY,  -- the key being rotated to
    phase           varchar(16) NOT NULL,     -- map, rows, rejects, vault
    position        text NOT NULL DEFAULT '', -- where in the phase (a block, a message id)
    started_at      timestamptz NOT NULL DEFAULT now()
);
