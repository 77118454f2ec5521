SELECT message_id, sealed_body, key_id FROM ingestor_rejects WHERE sealed_body IS NOT NULL;
