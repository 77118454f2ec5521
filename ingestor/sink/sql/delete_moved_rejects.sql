-- Rejects that `rejects replay` stored again under another key (an event now taken out of
-- its SNS or EventBridge envelope is keyed by the envelope's id): the message is in its
-- new row or reject, and leaves its old one, so it is in one table, once.
DELETE FROM ingestor_rejects WHERE message_id = ANY($1::varchar[]);
