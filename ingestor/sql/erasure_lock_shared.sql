-- A writer's batch: no forget commits between its look at the erasure ledger and its merge.
SELECT pg_advisory_xact_lock_shared($1);
