-- vecplug core functions (plain SQL). Repeatable: every statement is
-- CREATE OR REPLACE or a grant, so applying the file again is harmless.

-- The schema version: the highest migration applied.
CREATE OR REPLACE FUNCTION vecplug.schema_version() RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(max(split_part(name, '_', 1)::integer), 0)
    FROM vecplug.migrations WHERE kind = 'migration'
$$;

-- Every setting as one jsonb object, for the functions that call the
-- server. Not for PUBLIC: it holds the API key. SECURITY DEFINER callers
-- (vecplug.embed_query ...) run it as the owner.
CREATE OR REPLACE FUNCTION vecplug._server_settings() RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(name, value), '{}'::jsonb) FROM vecplug.settings
$$;
REVOKE ALL ON FUNCTION vecplug._server_settings() FROM PUBLIC;

-- Objects outside schema vecplug that depend on something inside it
-- (a column default calling vecplug.embed_document, a view, a trigger):
-- what `DROP SCHEMA vecplug CASCADE` would take with it. Uninstall refuses
-- while there are any, unless told to cascade.
CREATE OR REPLACE FUNCTION vecplug.dependents() RETURNS TABLE (object text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ours (classid, objid) AS (
        SELECT 'pg_proc'::regclass, oid FROM pg_proc WHERE pronamespace = 'vecplug'::regnamespace
        UNION ALL
        SELECT 'pg_class'::regclass, oid FROM pg_class WHERE relnamespace = 'vecplug'::regnamespace
        UNION ALL
        SELECT 'pg_type'::regclass, oid FROM pg_type WHERE typnamespace = 'vecplug'::regnamespace
    )
    SELECT DISTINCT CASE WHEN d.classid = 'pg_rewrite'::regclass  -- a view, rather than its rule
                         THEN pg_describe_object('pg_class'::regclass,
                                                 (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid), 0)
                         ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END
    FROM pg_depend d
    JOIN ours ON d.refclassid = ours.classid AND d.refobjid = ours.objid
    WHERE d.deptype IN ('n', 'a')
      AND CASE d.classid  -- the schema the dependent object lives in (with its table, for those without one)
            WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = d.objid)
            WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.objid)
            WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = d.objid)
            WHEN 'pg_constraint'::regclass THEN (SELECT connamespace FROM pg_constraint WHERE oid = d.objid)
            WHEN 'pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_attrdef a
                                              JOIN pg_class c ON c.oid = a.adrelid WHERE a.oid = d.objid)
            WHEN 'pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_trigger t
                                              JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid = d.objid)
            WHEN 'pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_rewrite r
                                              JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
            WHEN 'pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_policy p
                                             JOIN pg_class c ON c.oid = p.polrelid WHERE p.oid = d.objid)
          END IS DISTINCT FROM 'vecplug'::regnamespace
    ORDER BY 1
$$;
