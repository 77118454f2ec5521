-- Staged rows whose user may have an erased value (their user id's bucket is one of the
-- erased users'): the writer checks those by keyed digest. While nothing was ever erased,
-- nothing is computed per row (the EXISTS is evaluated once).
SELECT s.message_id, s.user_id, s.masked_ip, s.masked_device_id
FROM ingestor_staging s
WHERE EXISTS (SELECT 1 FROM ingestor_erased_buckets)
  AND ingestor_user_bucket(s.user_id) IN (SELECT bucket FROM ingestor_erased_buckets);
