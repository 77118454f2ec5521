-- Each old token's new token, and its value sealed again bound to the new token.
INSERT INTO ingestor_rekey_map (old, new, sealed)
SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::bytea[])
ON CONFLICT (old) DO NOTHING;
