-- Adding a partition: one at a time across copies (the migrations' advisory lock, $1),
-- and never waiting long for the parent's lock behind a long query (it would hold up
-- every writer queued behind it): 55P03 instead, retried with backoff.
SELECT set_config('lock_timeout', '2s', true), pg_advisory_xact_lock($1);
