-- Add the partition partition_args set: made like its parent, then attached. ATTACH
-- PARTITION takes a SHARE UPDATE EXCLUSIVE lock on the parent, beside which reads and
-- writes go on (CREATE TABLE ... PARTITION OF would take an ACCESS EXCLUSIVE one); an empty
-- table attaches at once. Dates are in ISO form, which every DateStyle reads.
DO $$
DECLARE
    s text := current_setting('ingestor.partition_schema');
    p text := current_setting('ingestor.partition_name');
    t text := current_setting('ingestor.partition_parent');
BEGIN
    EXECUTE format(
        'CREATE TABLE %1$I.%2$I (LIKE %1$I.%3$I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
        'INCLUDING GENERATED INCLUDING STORAGE)', s, p, t);
    EXECUTE format(
        'ALTER TABLE %1$I.%3$I ATTACH PARTITION %1$I.%2$I FOR VALUES FROM (%4$L) TO (%5$L)',
        s, p, t, current_setting('ingestor.partition_from'),
        current_setting('ingestor.partition_to'));
END
$$;
