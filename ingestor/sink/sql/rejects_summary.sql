SELECT reason_code, count(*) AS count,
       count(*) FILTER (WHERE sealed_body IS NOT NULL OR body_kind = 'row') AS replayable,
       min(rejected_at) AS first, max(rejected_at) AS last
FROM ingestor_rejects
WHERE $1::varchar IS NULL OR reason_code = $1
GROUP BY reason_code
ORDER BY count(*) DESC;
