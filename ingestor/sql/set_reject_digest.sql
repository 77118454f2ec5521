UPDATE ingestor_rejects SET body_digest = $2 WHERE message_id = $1;
