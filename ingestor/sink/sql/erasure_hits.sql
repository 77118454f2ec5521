SELECT digest, tombstone FROM ingestor_erasures WHERE digest = ANY($1::varchar[]);
