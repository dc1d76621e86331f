-- vecplug: remove schema vecplug and everything in it (what `vecplug pg uninstall` runs).
--
--   psql -v ON_ERROR_STOP=1 -1 -d DATABASE -f uninstall.sql
--
-- Refuses, naming them, while objects outside the schema depend on it (a
-- column default calling vecplug.embed_document, a view, a trigger), unless
-- `SET vecplug.cascade = on` came first: then they are dropped with it.
-- pgvector and plpython3u stay installed: other code may use them.

DO $$
DECLARE
    outside text;
BEGIN
    IF to_regnamespace('vecplug') IS NULL OR to_regprocedure('vecplug.dependents()') IS NULL THEN
        RETURN;
    END IF;
    SELECT string_agg(object, '; ') INTO outside FROM vecplug.dependents();
    IF outside IS NOT NULL AND coalesce(current_setting('vecplug.cascade', true), '') <> 'on' THEN
        RAISE EXCEPTION 'vecplug: objects outside schema vecplug depend on it: %', outside
            USING HINT = 'Drop them first, or SET vecplug.cascade = on to drop them with it.';
    END IF;
END
$$;

DROP SCHEMA IF EXISTS vecplug CASCADE;
