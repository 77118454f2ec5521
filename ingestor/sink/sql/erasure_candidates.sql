-- Waits for a forget under way, then the staged rows to check by keyed digest (see the
-- function in migration 0007).
SELECT * FROM ingestor_erasure_candidates($1);
