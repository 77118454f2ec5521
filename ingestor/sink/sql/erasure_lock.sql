-- forget: alone against the writers until it commits (they take it shared: erasure_candidates).
SELECT pg_advisory_xact_lock($1);
