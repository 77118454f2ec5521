-- What add_partition makes, for this transaction only: partition $2 of table $3 in
-- schema $1, for [$4, $5). Passed as settings so that the DDL, which takes no
-- parameters, is a constant statement that quotes every name and date itself.
SELECT set_config('ingestor.partition_schema', $1::text, true),
       set_config('ingestor.partition_name', $2::text, true),
       set_config('ingestor.partition_parent', $3::text, true),
       set_config('ingestor.partition_from', to_char($4::date, 'YYYY-MM-DD'), true),
       set_config('ingestor.partition_to', to_char($5::date, 'YYYY-MM-DD'), true);
