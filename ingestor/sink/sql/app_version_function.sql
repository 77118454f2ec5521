-- Is the analysts' function ingestor_app_version_text(integer) there (migration 0009)?
SELECT to_regprocedure('ingestor_app_version_text(integer)') IS NOT NULL;
