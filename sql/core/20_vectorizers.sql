-- vecplug vectorizers, the public API: embed a text column into a vector
-- column of the same table, on insert and on update. Plain SQL/plpgsql
-- (installs on managed PostgreSQL); the sync mode's trigger is in
-- query/20_sync.sql (plpython3u). Repeatable: CREATE OR REPLACE and grants only.
--
--   SELECT vecplug.create_vectorizer('docs', 'body');     -- adds docs.embedding, an HNSW index, triggers
--   $ vecplug pg worker --dsn ... --server-url ...          -- embeds what the triggers queue
--   SELECT * FROM vecplug.status;                            -- what waits, failed, was done
--   SELECT vecplug.retry_failed('docs');                     -- queue the failed rows again
--   SELECT vecplug.drop_vectorizer('docs');                  -- triggers and queue go, the vectors stay
--
-- Who may do what: a vectorizer sends a table's text to the embedding server
-- vecplug's owner configured, so these functions run as that owner (SECURITY
-- DEFINER) and check that the session's role owns the table (or may become
-- its owner). vecplug's owner must be able to alter the table too: it owns
-- it, is a superuser, or is a member of the table's owner. The helpers they
-- call (vecplug._*, the view vecplug.vectorizer_columns) are in
-- core/15_vectorizer_internals.sql.

-- A chunked vectorizer's destination table, made as the caller (who must own the source table,
-- or be a member of its owner) and given to the source table's owner: the chunks are that
-- owner's data, like the rows they come from. `destination` is 'name' (in the source's schema)
-- or 'schema.name', in SQL's spelling (quote what needs quotes); NULL: <source>_chunks. A
-- table of that name is taken as it is (made = false): _create_vectorizer checks its shape.
CREATE OR REPLACE FUNCTION vecplug._make_chunk_table(source regclass, destination text,
                                                     OUT chunks regclass, OUT made boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    relation record;
    parts text[];
    schema_name text;
    table_name text;
    ddl text;
BEGIN
    SELECT c.relkind, c.relowner, n.nspname, c.relname INTO relation
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF relation.relkind IS NULL OR relation.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'vecplug: % is not a table (a vectorizer needs a table or a partitioned table)', source
            USING ERRCODE = '42809';
    END IF;
    IF NOT (pg_has_role(session_user, relation.relowner, 'MEMBER')
            OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)) THEN
        RAISE EXCEPTION 'vecplug: role % may not create a vectorizer on table %, which belongs to role %',
            session_user, source, relation.relowner::regrole USING ERRCODE = '42501', HINT = 'Run it as the table''s owner.';
    END IF;
    IF destination IS NULL THEN
        parts := ARRAY[relation.nspname, left(relation.relname, 56) || '_chunks'];
    ELSE
        parts := parse_ident(destination);
        IF cardinality(parts) = 1 THEN
            parts := ARRAY[relation.nspname] || parts;
        ELSIF cardinality(parts) <> 2 THEN
            RAISE EXCEPTION 'vecplug: destination % is not ''table'' or ''schema.table''', quote_literal(destination)
                USING ERRCODE = '42602';
        END IF;
    END IF;
    schema_name := parts[1];
    table_name := parts[2];
    chunks := to_regclass(format('%I.%I', schema_name, table_name));
    made := chunks IS NULL;
    IF made THEN
        SELECT format('CREATE TABLE %I.%I (%s, chunk_index integer NOT NULL, chunk_start integer NOT NULL, '
                      'chunk_end integer NOT NULL, chunk text NOT NULL, PRIMARY KEY (%s, chunk_index), '
                      'FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE CASCADE ON UPDATE CASCADE)',
                      schema_name, table_name,
                      string_agg(format('%I %s NOT NULL', k.name, k.type_name), ', ' ORDER BY k.position),
                      string_agg(quote_ident(k.name), ', ' ORDER BY k.position),
                      string_agg(quote_ident(k.name), ', ' ORDER BY k.position), source,
                      string_agg(quote_ident(k.name), ', ' ORDER BY k.position))
        INTO ddl
        FROM (SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type_name, u.position
              FROM pg_index i, unnest(i.indkey::smallint[]) WITH ORDINALITY AS u (attnum, position)
              JOIN pg_attribute a ON a.attrelid = source AND a.attnum = u.attnum
              WHERE i.indrelid = source AND i.indisprimary) k
        HAVING count(*) > 0;
        IF ddl IS NULL THEN
            RAISE EXCEPTION 'vecplug: table % has no primary key', source USING ERRCODE = '42P16',
                HINT = 'A vectorizer finds rows again by their primary key: ALTER TABLE ... ADD PRIMARY KEY (...).';
        END IF;
        EXECUTE ddl;
        chunks := format('%I.%I', schema_name, table_name)::regclass;
        IF (SELECT relowner FROM pg_class WHERE oid = chunks) <> relation.relowner THEN
            EXECUTE format('ALTER TABLE %s OWNER TO %s', chunks, relation.relowner::regrole);
        END IF;
    END IF;
END
$$;

-- The view <destination>_view: each chunk with its source row's columns (the key once), made as
-- the caller and given to the source's owner. security_invoker: a reader needs the rights to
-- read both tables, and the source's row-level security applies to them as on the table itself.
CREATE OR REPLACE FUNCTION vecplug._make_chunk_view(vectorizer_id integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns;
    d record;
    view_name text;
    source_columns text;
BEGIN
    SELECT * INTO STRICT v FROM vecplug.vectorizer_columns c WHERE c.id = vectorizer_id;
    d := vecplug._destination(v);
    view_name := left(d.table_name, 58) || '_view';
    IF to_regclass(format('%I.%I', d.schema_name, view_name)) IS NOT NULL THEN
        RAISE NOTICE 'vecplug: %.% exists already: the chunks of % have no view of their own', quote_ident(d.schema_name),
            quote_ident(view_name), v.name;
        RETURN;
    END IF;
    SELECT string_agg(format(', s.%I', a.attname), '' ORDER BY a.attnum) INTO source_columns
    FROM pg_attribute a WHERE a.attrelid = v.source AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attnum <> ALL (v.key_attnums)
      AND a.attname NOT IN ('chunk_index', 'chunk_start', 'chunk_end', 'chunk', v.embedding_column);
    EXECUTE format('CREATE VIEW %I.%I WITH (security_invoker = true) AS SELECT %s%s, c.chunk_index, c.chunk_start, '
                   'c.chunk_end, c.chunk, c.%I FROM %I.%I c JOIN %s s ON %s',
                   d.schema_name, view_name,
                   (SELECT string_agg(format('c.%I', k), ', ') FROM unnest(d.key_columns) AS k),
                   coalesce(source_columns, ''), v.embedding_column, d.schema_name, d.table_name, v.source,
                   (SELECT string_agg(format('c.%I = s.%I', dk, sk), ' AND ')
                    FROM unnest(d.key_columns, v.key_columns) AS k (dk, sk)));
    EXECUTE format('ALTER VIEW %I.%I OWNER TO %s', d.schema_name, view_name,
                   (SELECT relowner::regrole FROM pg_class WHERE oid = v.source));
END
$$;

-- Schema version 4 added the chunking arguments: the old signature goes (two would make every call ambiguous).
DROP FUNCTION IF EXISTS vecplug.create_vectorizer(regclass, name, name, text, integer, text, text, boolean, text, text);

-- Runs as the caller (the table's owner, which _create_vectorizer checks):
-- queueing the rows already there reads the table and turns keys into
-- text, which may run the owner's code (casts, policies): never as vecplug's owner.
-- A chunked vectorizer's destination table and view are made here too, as the caller.
CREATE OR REPLACE FUNCTION vecplug.create_vectorizer(
    source regclass,
    text_column name,
    embedding_column name DEFAULT 'embedding',
    mode text DEFAULT 'async',
    dimensions integer DEFAULT NULL,
    storage text DEFAULT 'vector',
    index text DEFAULT 'hnsw',
    enqueue_existing boolean DEFAULT true,
    on_error text DEFAULT 'queue',
    model text DEFAULT NULL,
    chunk_tokens integer DEFAULT NULL,
    chunk_overlap integer DEFAULT 0,
    late_chunking boolean DEFAULT false,
    destination text DEFAULT NULL,
    format text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chunks regclass;
    made boolean := false;
    new_id integer;
BEGIN
    IF chunk_tokens IS NOT NULL THEN
        PERFORM vecplug._check_chunking(chunk_tokens, chunk_overlap, late_chunking, format);  -- before making anything
        SELECT m.chunks, m.made INTO chunks, made FROM vecplug._make_chunk_table(source, destination) AS m;
    ELSIF destination IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: destination => ... is for chunked vectorizers: pass chunk_tokens => N too'
            USING ERRCODE = '22023';
    END IF;
    new_id := vecplug._create_vectorizer(source, text_column, embedding_column, mode, dimensions, storage, index,
                                         enqueue_existing, on_error, model, chunk_tokens, chunk_overlap,
                                         late_chunking, chunks, format);
    IF made THEN
        PERFORM vecplug._make_chunk_view(new_id);
    END IF;
    IF enqueue_existing THEN
        PERFORM vecplug._enqueue_rows_without_vector(new_id);
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION vecplug.create_vectorizer(regclass, name, name, text, integer, text, text, boolean, text, text,
                                              integer, integer, boolean, text, text) IS
    'Embed text_column of source into embedding_column on insert and update (with chunk_tokens: its passages into '
    'a destination table); returns the vectorizer''s id';
GRANT EXECUTE ON FUNCTION vecplug.create_vectorizer(regclass, name, name, text, integer, text, text, boolean, text, text,
                                                   integer, integer, boolean, text, text) TO PUBLIC;

-- Remove a vectorizer: its triggers and its queued and failed work. The
-- vector column and its index stay (the vectors are still good) unless
-- drop_column; for a chunked vectorizer the destination table (and its
-- view) stay unless drop_column. Returns how many queued rows were dropped with it.
CREATE OR REPLACE FUNCTION vecplug.drop_vectorizer(
    source regclass,
    embedding_column name DEFAULT 'embedding',
    drop_column boolean DEFAULT false
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._vectorizer_for_update(source, embedding_column, 'drop a vectorizer');
    pending bigint;
BEGIN
    PERFORM vecplug._drop_vectorizer_triggers(v.id, v.source);
    SELECT count(DISTINCT pk) INTO pending FROM (SELECT pk FROM vecplug.queue WHERE vectorizer_id = v.id
        UNION ALL SELECT k.pk FROM vecplug.queued_statements s, vecplug._statement_keys(s.keys) k
        WHERE s.vectorizer_id = v.id) queued;
    DELETE FROM vecplug.queue WHERE vectorizer_id = v.id;
    DELETE FROM vecplug.failed WHERE vectorizer_id = v.id;
    DELETE FROM vecplug.activity WHERE vectorizer_id = v.id;
    DELETE FROM vecplug.vectorizers WHERE id = v.id;
    IF v.next_destination IS NOT NULL AND EXISTS (SELECT FROM pg_class WHERE oid = v.next_destination) THEN
        EXECUTE format('DROP TABLE %s', v.next_destination);  -- a chunked re-embedding's shadow table
    ELSIF v.next_column IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', v.source, v.next_column);
    END IF;
    IF coalesce(drop_column, false) AND v.destination IS NOT NULL THEN
        PERFORM vecplug._drop_chunk_table(v);
    ELSIF coalesce(drop_column, false) AND v.embedding_column IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', v.source, v.embedding_column);
        DELETE FROM vecplug.embedding_columns c WHERE c.table_oid = v.source AND c.column_name = v.embedding_column;
    END IF;
    IF pending > 0 THEN
        RAISE NOTICE 'vecplug: % queued rows of % were still waiting for a vector; they keep none', pending, v.name;
    END IF;
    PERFORM vecplug._forget_dropped_tables();
    RETURN pending;
END
$$;
COMMENT ON FUNCTION vecplug.drop_vectorizer(regclass, name, boolean) IS
    'Remove a vectorizer (triggers, queue); the vector column stays unless drop_column';
GRANT EXECUTE ON FUNCTION vecplug.drop_vectorizer(regclass, name, boolean) TO PUBLIC;

-- drop_vectorizer(..., drop_column => true) of a chunked vectorizer: its view (the one
-- _make_chunk_view made, if it is still there) and its destination table. Not CASCADE: an object
-- of the user's that depends on them makes it fail, with PostgreSQL's words naming it.
CREATE OR REPLACE FUNCTION vecplug._drop_chunk_table(v vecplug.vectorizer_columns) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record := vecplug._destination(v);
    chunk_view regclass;
BEGIN
    IF d.table_name IS NULL THEN
        RETURN;  -- dropped already
    END IF;
    SELECT r.ev_class INTO chunk_view FROM pg_depend dep JOIN pg_rewrite r ON r.oid = dep.objid
        JOIN pg_class c ON c.oid = r.ev_class
    WHERE dep.classid = 'pg_rewrite'::regclass AND dep.refobjid = v.destination AND c.relkind = 'v'
      AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = v.destination)
      AND c.relname = left(d.table_name, 58) || '_view'
    LIMIT 1;
    IF chunk_view IS NOT NULL THEN
        EXECUTE format('DROP VIEW %s', chunk_view);
    END IF;
    EXECUTE format('DROP TABLE %s', v.destination);
    DELETE FROM vecplug.embedding_columns c WHERE c.table_oid = v.destination;
END
$$;
REVOKE ALL ON FUNCTION vecplug._drop_chunk_table(vecplug.vectorizer_columns) FROM PUBLIC;

-- Queue the failed rows of a vectorizer again (after fixing what made them fail).
CREATE OR REPLACE FUNCTION vecplug.retry_failed(source regclass, embedding_column name DEFAULT 'embedding')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._vectorizer_for_update(source, embedding_column, 'retry failed rows');
    moved bigint;
BEGIN
    WITH gone AS (DELETE FROM vecplug.failed f WHERE f.vectorizer_id = v.id RETURNING f.source, f.pk, f.queued_at)
    INSERT INTO vecplug.queue (vectorizer_id, source, pk, queued_at) SELECT v.id, g.source, g.pk, g.queued_at FROM gone g;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM pg_notify('vecplug_queue', v.id::text);
    END IF;
    RETURN moved;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.retry_failed(regclass, name) TO PUBLIC;

-- Per vectorizer: what waits, what failed, what was done. Everyone sees the
-- vectorizers of the tables they may read.
CREATE OR REPLACE VIEW vecplug.status AS
SELECT v.id,
       v.name AS vectorizer,
       CASE WHEN v.table_exists THEN v.source END AS source,
       v.text_column,
       v.mode,
       v.model,
       v.dimensions,
       coalesce(q.pending, 0) AS pending,
       q.oldest_pending_age,
       coalesce(q.retrying, 0) AS retrying,
       coalesce(f.failed, 0) AS failed,
       coalesce(a.embedded, 0) AS embedded,
       coalesce(a.truncated, 0) AS truncated,
       e.error AS last_error,
       e.at AS last_error_at,
       v.next_model AS reembedding_to,
       CASE WHEN p.problem IS NOT NULL
                THEN format('broken: %s; remove it with SELECT vecplug.drop_vectorizer(%s)', p.problem, v.id)
            WHEN v.next_model IS NOT NULL THEN 're-embedding'
            ELSE 'ok' END AS state
FROM vecplug.vectorizer_columns v
CROSS JOIN LATERAL (SELECT vecplug._vectorizer_problem(v) AS problem) p
LEFT JOIN LATERAL (SELECT count(DISTINCT pk) AS pending, now() - min(queued_at) AS oldest_pending_age,
                          count(DISTINCT pk) FILTER (WHERE attempts > 0) AS retrying
                   FROM (SELECT pk, queued_at, attempts FROM vecplug.queue
                         WHERE vectorizer_id = v.id AND source = v.source
                         UNION ALL  -- statements a worker has not spread into vecplug.queue yet
                         SELECT k.pk, s.queued_at, 0 FROM vecplug.queued_statements s, vecplug._statement_keys(s.keys) k
                         WHERE s.vectorizer_id = v.id AND s.source = v.source) queued) q ON true
LEFT JOIN LATERAL (SELECT count(*) AS failed FROM vecplug.failed WHERE vectorizer_id = v.id AND source = v.source) f ON true
LEFT JOIN LATERAL (SELECT sum(embedded) AS embedded, sum(truncated) AS truncated
                   FROM vecplug.activity WHERE vectorizer_id = v.id) a ON true
LEFT JOIN LATERAL (SELECT error, at FROM vecplug.activity WHERE vectorizer_id = v.id AND error IS NOT NULL
                   ORDER BY at DESC LIMIT 1) e ON true
WHERE NOT v.table_exists OR has_any_column_privilege(v.source, 'SELECT');
COMMENT ON VIEW vecplug.status IS
    'Per vectorizer: pending rows, oldest pending age, failed rows, rows embedded, truncated texts, last error, state';
GRANT SELECT ON vecplug.status TO PUBLIC;
