SELECT old, new FROM ingestor_rekey_map WHERE old = ANY($1::varchar[]);
