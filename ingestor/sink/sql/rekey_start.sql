-- A new rotation: an empty map, at its first phase.
DELETE FROM ingestor_rekey_map;
