INSERT INTO ingestor_rekey_map (old, new)
SELECT * FROM unnest($1::varchar[], $2::varchar[])
ON CONFLICT (old) DO NOTHING;
