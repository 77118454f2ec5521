-- forget: alone against the writers until it commits (they take it shared, erasure_lock_shared).
SELECT pg_advisory_xact_lock($1);
