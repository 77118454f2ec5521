-- Does pg_partman manage the table $1 ('schema.table', as part_config names it)? Its
-- part_config lives in the extension's schema, known only here, hence query_to_xml to
-- read it in one statement. A role that may not read part_config is answered yes: it
-- cannot tell, and ingestor then leaves the partitions to pg_partman.
SELECT coalesce((
    SELECT CASE
        WHEN NOT has_schema_privilege(n.oid, 'USAGE')
          OR NOT has_table_privilege(format('%I.part_config', n.nspname), 'SELECT') THEN true
        ELSE (xpath('/row/managed/text()', query_to_xml(format(
            'SELECT EXISTS (SELECT 1 FROM %I.part_config WHERE parent_table = %L) AS managed',
            n.nspname, $1::text), false, true, '')))[1]::text::boolean
    END
    FROM pg_extension e
    JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_partman'
), false);
