-- Per transaction: old token -> new token, for erasure (new = a random tombstone) and key
-- rotation (new = the token under the new key). Emptied at every commit.
CREATE TEMP TABLE IF NOT EXISTS ingestor_token_map(
    old varchar(256) PRIMARY KEY,
    new varchar(256) NOT NULL
) ON COMMIT DELETE ROWS;
