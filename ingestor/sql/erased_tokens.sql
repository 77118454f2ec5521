-- When each of these tombstones was made (the forget that left it), if it was.
SELECT t.token, max(a.at) AS at
FROM pii_reveal_audit a, unnest(a.tokens) AS t(token)
WHERE a.action = 'forget' AND a.tokens && $1::varchar[] AND t.token = ANY($1::varchar[])
GROUP BY t.token;
