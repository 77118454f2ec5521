-- Audit rows name tokens under the new key too: the old key is being retired.
UPDATE pii_reveal_audit a
SET tokens = ARRAY(
    SELECT coalesce(m.new, t.token)
    FROM unnest(a.tokens) WITH ORDINALITY AS t(token, position)
    LEFT JOIN ingestor_rekey_map m ON m.old = t.token
    ORDER BY t.position
)
WHERE EXISTS (SELECT 1 FROM unnest(a.tokens) t(token)
              JOIN ingestor_rekey_map m ON m.old = t.token);
