-- What the table $1 is (found by search_path, as every other statement finds it): its
-- kind ('r' plain, 'p' partitioned; no row: missing), its schema; when partitioned, its
-- partition key as PostgreSQL prints it, the strategy ('r' range), the one column it is
-- on (NULL for an expression or several columns), whether it has a DEFAULT partition;
-- and whether this role may add partitions: it owns the table (or is a member of its
-- owner) and may CREATE in its schema.
SELECT c.relkind::text AS relkind,
       n.nspname::text AS schema,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       p.partstrat::text AS strategy,
       a.attname::text AS key_column,
       coalesce(p.partdefid <> 0, false) AS has_default,
       pg_has_role(c.relowner, 'USAGE') AS owner,
       has_schema_privilege(c.relnamespace, 'CREATE') AS may_create_in_schema
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table p ON p.partrelid = c.oid
LEFT JOIN pg_attribute a
    ON a.attrelid = c.oid AND p.partnatts = 1 AND a.attnum = p.partattrs[0]
WHERE c.oid = to_regclass($1);
