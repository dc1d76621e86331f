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
    vectorizers text;
BEGIN
    IF to_regnamespace('vecplug') IS NULL OR to_regprocedure('vecplug.dependents()') IS NULL THEN
        RETURN;
    END IF;
    -- a vectorizer's triggers are named as its vectorizer, with the call that removes it
    SELECT string_agg(object, '; ') INTO outside FROM vecplug.dependents() WHERE object !~ '^trigger vecplug_[0-9]+_';
    IF to_regclass('vecplug.vectorizer_columns') IS NOT NULL THEN
        SELECT string_agg(format('vectorizer %s (%s): SELECT vecplug.drop_vectorizer(%s)', id, name, id), '; '
                          ORDER BY id) INTO vectorizers FROM vecplug.vectorizer_columns WHERE table_exists;
    END IF;
    IF (outside IS NOT NULL OR vectorizers IS NOT NULL)
       AND coalesce(current_setting('vecplug.cascade', true), '') <> 'on' THEN
        RAISE EXCEPTION 'vecplug: objects outside schema vecplug depend on it: %', concat_ws('; ', vectorizers, outside)
            USING HINT = 'Drop them first, or SET vecplug.cascade = on to drop them with it.';
    END IF;
END
$$;

-- With cascade, a re-embedding in progress leaves no shadow column behind
-- (the vectorizers' triggers go with their functions; vector columns stay).
DO $$
DECLARE
    shadow record;
BEGIN
    IF to_regclass('vecplug.vectorizer_columns') IS NULL THEN
        RETURN;
    END IF;
    FOR shadow IN SELECT source, next_column FROM vecplug.vectorizer_columns WHERE next_column IS NOT NULL LOOP
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', shadow.source, shadow.next_column);
    END LOOP;
END
$$;

DROP SCHEMA IF EXISTS vecplug CASCADE;
