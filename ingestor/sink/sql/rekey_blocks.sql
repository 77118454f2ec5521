-- How many blocks user_logins has now: the rows pass walks them in ranges. A partitioned
-- table has no blocks of its own: the largest of its partitions' (each is walked by
-- the same block ranges).
SELECT (greatest(
    pg_relation_size('user_logins'),
    (SELECT max(pg_relation_size(relid)) FROM pg_partition_tree('user_logins'))
) / current_setting('block_size')::bigint)::bigint;
