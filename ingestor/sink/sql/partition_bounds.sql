-- The partitions of the table $1 and their bounds (NULL: MINVALUE or MAXVALUE; the
-- DEFAULT partition has neither). PostgreSQL gives a bound only as text, printed in the
-- session's DateStyle; cast back in the same session, it reads the same whatever that is.
SELECT name, bound = 'DEFAULT' AS is_default,
       (regexp_match(bound, 'FROM \(''([^'']*)''\)'))[1]::date AS lower,
       (regexp_match(bound, 'TO \(''([^'']*)''\)'))[1]::date AS upper
FROM (
    SELECT c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass($1)
) partitions
ORDER BY lower NULLS FIRST, name;
