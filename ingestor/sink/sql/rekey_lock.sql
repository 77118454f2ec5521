-- One rotation at a time (a session lock: released when the command's connection closes).
SELECT pg_try_advisory_lock(hashtext($1));
