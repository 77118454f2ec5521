-- Is there a unique index on user_logins whose key columns are exactly $1 (in any order,
-- as ON CONFLICT infers it; no predicate, no expression)? The merge's ON CONFLICT needs it.
SELECT EXISTS (
    SELECT 1
    FROM pg_index i
    WHERE i.indrelid = to_regclass('user_logins')
      AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
      AND i.indnkeyatts = cardinality($1::text[])
      AND (
          SELECT array_agg(a.attname::text ORDER BY a.attname)
          FROM pg_attribute a
          WHERE a.attrelid = i.indrelid
            AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1])
      ) = (SELECT array_agg(c ORDER BY c) FROM unnest($1::text[]) AS c)
);
