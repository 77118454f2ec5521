-- Rejects keep only what is known to be safe (an allow-list, rejects.py), and the keyed
-- digest of their user_id, by which `forget --user-id` finds them. Rejects stored before
-- this migration have no digest (it needs the masking key): forget still finds those by
-- the user_id in their body.
ALTER TABLE ingestor_rejects ADD COLUMN IF NOT EXISTS user_digest varchar(64);
CREATE INDEX IF NOT EXISTS ingestor_rejects_user_digest_idx ON ingestor_rejects (user_digest);

-- Bodies stored before were redacted by a deny-list of key names, so an address under any
-- other name ("client_ip", free text, a JSON string) is in them in plaintext. Rewrite each
-- to the allow-list: the top-level ip and device_id (already tokens), user_id, device_type,
-- locale and app_version when they pass their rules, and for every other key its name (or
-- its position, when the name is not a plain identifier), type and size. A body holding a
-- \u0000 escape, which PostgreSQL's JSON functions cannot read, keeps nothing. Valid rows
-- the database refused (body_kind 'row') hold only the masked row: they stay.
UPDATE ingestor_rejects r
SET body = CASE WHEN strpos(r.body, '\u0000') > 0 THEN NULL ELSE (
    SELECT coalesce(json_object_agg(k.name, k.value ORDER BY k.position), '{}')::text
    FROM (
        SELECT e.position,
               CASE WHEN e.plain THEN e.key ELSE '#' || e.position END AS name,
               CASE
                   WHEN e.kind = 'null' AND e.login THEN e.value
                   WHEN e.key IN ('ip', 'device_id') AND e.kind = 'string'
                        AND e.text ~ '^([0-9a-f]{64}|erased:[0-9a-f]{32})$' THEN e.value
                   WHEN e.key IN ('user_id', 'device_type', 'locale') AND e.kind = 'string'
                        AND length(e.text) BETWEEN 1 AND (CASE e.key WHEN 'user_id' THEN 128 ELSE 32 END)
                        AND e.text !~ '[[:cntrl:]]' THEN e.value
                   WHEN e.key = 'app_version' AND e.kind = 'string'
                        AND e.text ~ '^[0-9]{1,3}(\.[0-9]{1,3}){0,2}$' THEN e.value
                   WHEN e.plain THEN json_build_object('type', e.kind, 'size', e.size)
                   ELSE json_build_object('type', e.kind, 'size', e.size, 'name_size', length(e.key))
               END AS value
        FROM (
            SELECT j.key, j.value, j.position, json_typeof(j.value) AS kind,
                   j.value #>> '{}' AS text,
                   j.key IN ('ip', 'device_id', 'user_id', 'device_type', 'locale', 'app_version') AS login,
                   j.key IN ('ip', 'device_id', 'user_id', 'device_type', 'locale', 'app_version')
                       OR (j.key ~ '^[A-Za-z_][A-Za-z0-9_-]{0,63}$' AND j.key !~ '[0-9]{3}') AS plain,
                   CASE json_typeof(j.value)
                       WHEN 'string' THEN length(j.value #>> '{}')
                       WHEN 'array' THEN json_array_length(j.value)
                       WHEN 'object' THEN (SELECT count(*) FROM json_object_keys(j.value))::int
                       WHEN 'number' THEN length(j.value::text)
                       ELSE 0
                   END AS size
            FROM json_each(r.body::json) WITH ORDINALITY AS j(key, value, position)
        ) e
    ) k
) END
WHERE r.body IS NOT NULL AND r.body_kind <> 'row';
