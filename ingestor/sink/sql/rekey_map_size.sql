SELECT count(*) FROM ingestor_rekey_map;
