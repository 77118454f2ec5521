-- The canonical spelling of a stored app_version, for analysts' queries:
-- ingestor_app_version_text(2003000) = '2.3.0'. A version is stored as
-- major*1_000_000 + minor*1_000 + patch, so "2.00", "2.0" and "2" are one version,
-- 2000000, and read back as '2.0.0'. NULL, and a number no version gives (negative, or
-- past 999.999.999), give NULL. The Python twin is ingestor.transform.rules.app_version_text
-- (a test holds them equal). Plain SQL, IMMUTABLE and STRICT: the planner inlines it.
CREATE OR REPLACE FUNCTION ingestor_app_version_text(version integer) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN version BETWEEN 0 AND 999999999 THEN
        (version / 1000000)::text || '.' || (version / 1000 % 1000)::text || '.'
        || (version % 1000)::text
    END
$$;
