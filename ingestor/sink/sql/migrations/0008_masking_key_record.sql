-- Which masking key (INGESTOR_HMAC_KEY, by its public id hk-...) the tables' tokens are
-- made with: one row. A service started with another key stops instead of mixing tokens
-- (equal values would no longer give equal tokens); `ingestor rekey` moves it.
CREATE TABLE IF NOT EXISTS ingestor_masking_key(
    only_one        boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    mask_key_id     varchar(32) NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- Tables loaded before this record existed: the vault knows the key of its tokens (the
-- key most of its entries were made with). Without a vault, the first start records it.
INSERT INTO ingestor_masking_key (mask_key_id)
SELECT mask_key_id FROM pii_vault GROUP BY mask_key_id ORDER BY count(*) DESC LIMIT 1
ON CONFLICT (only_one) DO NOTHING;
