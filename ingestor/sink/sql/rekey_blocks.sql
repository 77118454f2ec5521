-- How many blocks user_logins has now: the rows pass walks them in ranges.
SELECT (pg_relation_size('user_logins') / current_setting('block_size')::bigint)::bigint;
