-- Keep only these tokens in the transaction's token map.
DELETE FROM ingestor_token_map WHERE NOT (old = ANY($1::varchar[]));
