-- forget: no rotation may run beside it (the rotation's lock, held for the transaction).
SELECT pg_try_advisory_xact_lock(hashtext($1));
