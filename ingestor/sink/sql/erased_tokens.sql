-- When each of these tombstones was made (the forget that left it), if it was.
SELECT t.token, max(a.at) AS at
FROM pii_audit_tokens t
JOIN pii_reveal_audit a ON a.id = t.audit_id
WHERE a.action = 'forget' AND t.token = ANY($1::varchar[])
GROUP BY t.token;
