-- Is the name $2 taken in schema $1 (a table, an index, a detached partition)?
SELECT EXISTS (
    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relname = $2
);
