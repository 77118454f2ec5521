-- Ledger entries made under another masking key than $1: a rotation cannot carry them over
-- (the erased values are gone, so their tokens under the new key cannot be made).
SELECT count(*) FROM ingestor_erasures WHERE mask_key_id <> $1;
