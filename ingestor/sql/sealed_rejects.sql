-- Rejects whose keyed digest rekey can recompute: from the sealed original body, or, for a
-- valid row the database refused, from its body (the masked row, its tokens rewritten).
SELECT message_id, sealed_body, key_id, body, body_kind
FROM ingestor_rejects
WHERE sealed_body IS NOT NULL OR (body_kind = 'row' AND body IS NOT NULL);
