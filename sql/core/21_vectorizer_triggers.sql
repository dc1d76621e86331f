-- The trigger functions of vectorizers (plain plpgsql; installs on managed
-- PostgreSQL). Repeatable. The sync mode's embedding trigger is in
-- query/20_sync.sql (it calls the server through plpython3u).
--
-- Who runs them: the role that writes the table (SECURITY INVOKER), like
-- every other trigger of that table. They read the vectorizer's
-- description (vecplug.vectorizer_columns, readable by all) and add or
-- remove queue rows themselves; row-level security on vecplug.queue and
-- vecplug.failed (migration 0003) lets a role queue rows only of tables it
-- may write. Nothing here runs with vecplug's rights, so a table owner's
-- own code (a cast on its key type, a domain check, a policy) never runs
-- with rights its owner lacks.
--
-- Keys travel as text. Every function that turns a key into text runs
-- under fixed settings (the SET lines below), so the text does not depend
-- on the writer's DateStyle, TimeZone, IntervalStyle, extra_float_digits,
-- bytea_output, lc_monetary or search_path; the worker reads keys back
-- under the same settings (vecplug_pgvector.vectorizers.KEY_SETTINGS).
--
-- Plain tables get statement-level triggers with transition tables: a
-- statement queues its rows as ONE row of vecplug.queued_statements (every
-- key in one two-dimensional text[]), which a worker spreads into
-- vecplug.queue when it claims a batch (migration 0005: a queue row per
-- written row cost a COPY four times the COPY alone). Partitioned tables get
-- row-level ones, which PostgreSQL clones to every partition, also those
-- attached later, so a write that names a partition is queued too; they
-- queue into vecplug.queue directly.

-- The vectorizer a trigger belongs to, checked against the table it fires
-- on (the vectorizer's table, or one of its partitions).
CREATE OR REPLACE FUNCTION vecplug._trigger_vectorizer(vectorizer_argument text, fired_on oid, trigger_name name)
RETURNS vecplug.vectorizer_columns
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found vecplug.vectorizer_columns;
BEGIN
    SELECT * INTO found FROM vecplug.vectorizer_columns WHERE id = vectorizer_argument::integer;
    IF found.id IS NULL OR NOT (found.source = fired_on
                                OR found.source IN (SELECT relid FROM pg_partition_ancestors(fired_on))) THEN
        RAISE EXCEPTION 'vecplug: trigger % on table % does not belong to vectorizer %', trigger_name,
            fired_on::regclass, vectorizer_argument USING ERRCODE = '39P01',
            HINT = 'Drop that trigger; vectorizers create their own with vecplug.create_vectorizer().';
    END IF;
    RETURN found;
END
$$;

-- A broken vectorizer's triggers stand aside: the write goes through, unembedded, with a warning.
CREATE OR REPLACE FUNCTION vecplug._stand_aside(v vecplug.vectorizer_columns, problem text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE WARNING 'vecplug: vectorizer % (%) is broken: %; this write is not embedded', v.id, v.name, problem
        USING HINT = format('Drop it: SELECT vecplug.drop_vectorizer(%s); then create a new one if you want.', v.id);
END
$$;

-- `pk` of the queue for rows of alias `alias`: ARRAY[alias.k1::text, ...].
CREATE OR REPLACE FUNCTION vecplug._key_array(key_columns name[], alias text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'ARRAY[' || string_agg(format('%I.%I::text', alias, k), ', ' ORDER BY position) || ']'
    FROM unnest(key_columns) WITH ORDINALITY AS c (k, position)
$$;

-- `a.k1 = b.k1 AND ...` over the key columns.
CREATE OR REPLACE FUNCTION vecplug._key_join(key_columns name[], left_alias text, right_alias text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I.%I = %I.%I', left_alias, k, right_alias, k), ' AND ')
    FROM unnest(key_columns) AS k
$$;

-- The rows of an INSERT or UPDATE statement that need a vector: text, no
-- vector (a statement that sets one itself is taken at its word), and for an
-- UPDATE a text (or a column its format names) that changed, or a key that did.
-- A query over the trigger's transition tables vecplug_new / vecplug_old, selecting `pk` and `body`.
CREATE OR REPLACE FUNCTION vecplug._changed_rows_query(v vecplug.vectorizer_columns, operation text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('SELECT %s AS pk, n.%I::text AS body FROM vecplug_new n WHERE n.%I IS NOT NULL AND n.%I IS NULL',
                  vecplug._key_array(v.key_columns, 'n'), v.text_column, v.text_column, v.embedding_column)
        || CASE WHEN operation = 'UPDATE' THEN
               format(' AND NOT EXISTS (SELECT FROM vecplug_old o WHERE %s AND %s IS NOT DISTINCT FROM %s)',
                      vecplug._key_join(v.key_columns, 'o', 'n'), vecplug._watched_row(v, 'o'),
                      vecplug._watched_row(v, 'n'))
           ELSE '' END
$$;

-- A row's text: the column, or for a generated column in a BEFORE trigger
-- (where PostgreSQL has not computed it yet) its expression over the row;
-- with a format template, the template filled with it and the row's columns.
-- Runs as the writer, who would run that expression anyway.
CREATE OR REPLACE FUNCTION vecplug._row_text(v vecplug.vectorizer_columns, fired_on oid, table_row anyelement,
                                             compute_generated boolean) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expression text;
    found text;
BEGIN
    IF compute_generated THEN
        SELECT pg_get_expr(d.adbin, d.adrelid) INTO expression
        FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = fired_on AND a.attname = v.text_column AND a.attgenerated <> '';
    END IF;
    IF expression IS NOT NULL THEN
        EXECUTE format('SELECT (%s)::text FROM (SELECT ($1).*) AS generated_from', expression) INTO found USING table_row;
    ELSE
        EXECUTE format('SELECT ($1).%I::text', v.text_column) INTO found USING table_row;
    END IF;
    IF v.format IS NOT NULL AND found IS NOT NULL THEN
        found := vecplug._fill_format(v.format, found, vecplug._format_values(v, table_row));
    END IF;
    RETURN found;
END
$$;

-- The values a row gives its vectorizer's format template: {"<name in the template>": "<column as text>"}.
CREATE OR REPLACE FUNCTION vecplug._format_values(v vecplug.vectorizer_columns, table_row anyelement) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    names text[] := vecplug._format_names(v.format);
    columns name[] := vecplug._format_columns(v);
    found jsonb := '{}';
    value text;
BEGIN
    FOR i IN 1 .. cardinality(names) LOOP
        EXECUTE format('SELECT ($1).%I::text', columns[i]) INTO value USING table_row;
        found := found || jsonb_build_object(names[i], value);
    END LOOP;
    RETURN found;
END
$$;

-- Did an UPDATE change the row's text? (BEFORE triggers compute a generated column's new value.)
CREATE OR REPLACE FUNCTION vecplug._text_changed(v vecplug.vectorizer_columns, fired_on oid, old_row anyelement,
                                                 new_row anyelement, generated boolean) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT vecplug._row_text(v, fired_on, old_row, false) IS DISTINCT FROM vecplug._row_text(v, fired_on, new_row, generated)
$$;

-- Did the statement write the vector column itself (taken at its word, not cleared or embedded)?
-- For an INSERT (old_row NULL): the new row has a vector; for an UPDATE: the vector changed.
-- pgvector's = is spelt with its schema (the search_path here is pg_catalog only).
CREATE OR REPLACE FUNCTION vecplug._statement_set_vector(column_name name, old_row anyelement, new_row anyelement)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    given boolean;
BEGIN
    IF old_row IS NULL THEN
        EXECUTE format('SELECT ($1).%I IS NOT NULL', column_name) INTO given USING new_row;
    ELSE
        EXECUTE format('SELECT NOT coalesce(($1).%1$I OPERATOR(%2$I.=) ($2).%1$I, ($1).%1$I IS NULL AND ($2).%1$I IS NULL)',
                       column_name, vecplug._vector_schema()) INTO given USING old_row, new_row;
    END IF;
    RETURN given;
END
$$;

-- Is the vectorizer's text column a generated one (BEFORE triggers cannot see its new value)?
CREATE OR REPLACE FUNCTION vecplug._text_is_generated(v vecplug.vectorizer_columns) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT attgenerated <> '' FROM pg_attribute WHERE attrelid = v.source AND attnum = v.text_attnum),
                    false)
$$;

-- AFTER INSERT / UPDATE: queue the rows that need a vector (or, for an async chunked vectorizer,
-- new chunks: _chunk_rows_query), wake the workers. Per statement on a plain table; per row on a
-- partitioned one, where the trigger's WHEN has chosen the rows.
CREATE OR REPLACE FUNCTION vecplug._queue_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'postgres'
SET timezone = 'UTC'
SET extra_float_digits = 3
SET bytea_output = 'hex'
SET lc_monetary = 'C'
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
    problem text := vecplug._vectorizer_problem(v);
    queued bigint;
BEGIN
    IF problem IS NOT NULL THEN
        PERFORM vecplug._stand_aside(v, problem);
        RETURN NULL;
    END IF;
    IF TG_LEVEL = 'ROW' THEN
        EXECUTE format('INSERT INTO vecplug.queue (vectorizer_id, source, pk) SELECT $1, $2, %s FROM (SELECT ($3).*) AS n',
                       vecplug._key_array(v.key_columns, 'n')) USING v.id, v.source::oid, NEW;
    ELSE  -- one row for the whole statement (a worker spreads it into vecplug.queue)
        EXECUTE 'INSERT INTO vecplug.queued_statements (vectorizer_id, source, keys) SELECT $1, $2, array_agg(changed.pk) '
                || 'FROM (' || CASE WHEN v.chunk_tokens IS NULL THEN vecplug._changed_rows_query(v, TG_OP)
                                    ELSE vecplug._chunk_rows_query(v, TG_OP) END
                || ') AS changed HAVING count(*) > 0'
            USING v.id, v.source::oid;
    END IF;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('vecplug_queue', v.id::text);
    END IF;
    RETURN NULL;
END
$$;

-- BEFORE UPDATE, per row whose text changed (for a generated text column:
-- per updated row, checked here): clear the vector (argument 'current'),
-- unless the statement set one itself, or the shadow column of a
-- re-embedding ('next'), so a stale vector never answers a query.
CREATE OR REPLACE FUNCTION vecplug._clear_vector() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
    column_name name := CASE TG_ARGV[1] WHEN 'next' THEN v.next_column ELSE v.embedding_column END;
BEGIN
    IF column_name IS NULL OR vecplug._vectorizer_problem(v) IS NOT NULL THEN
        RETURN NEW;  -- broken: the AFTER trigger warns once per statement
    END IF;
    IF TG_ARGV[2] = 'generated' THEN  -- no WHEN clause could see the new text: compare here
        IF NOT vecplug._text_changed(v, TG_RELID, OLD, NEW, true)
           OR (TG_ARGV[1] = 'current' AND vecplug._statement_set_vector(column_name, OLD, NEW)) THEN
            RETURN NEW;
        END IF;
    END IF;
    NEW := jsonb_populate_record(NEW, jsonb_build_object(column_name, NULL));
    RETURN NEW;
END
$$;

-- AFTER DELETE (per statement, or per row on a partitioned table): the
-- deleted rows' queued and failed work goes too. Queue rows a worker holds
-- are skipped, not waited for: that worker finds the row gone and drops them.
CREATE OR REPLACE FUNCTION vecplug._forget_deleted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'postgres'
SET timezone = 'UTC'
SET extra_float_digits = 3
SET bytea_output = 'hex'
SET lc_monetary = 'C'
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
    deleted text := CASE TG_LEVEL WHEN 'ROW' THEN '(SELECT ($3).*)' ELSE 'vecplug_old' END;
BEGIN
    IF vecplug._vectorizer_problem(v) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT FROM vecplug.queue q WHERE q.vectorizer_id = v.id AND q.source = v.source) THEN
        EXECUTE format('DELETE FROM vecplug.queue WHERE id IN (SELECT q.id FROM vecplug.queue q JOIN %s AS o '
                       'ON q.pk = %s WHERE q.vectorizer_id = $1 AND q.source = $2 FOR UPDATE OF q SKIP LOCKED)',
                       deleted, vecplug._key_array(v.key_columns, 'o'))
            USING v.id, v.source::oid, OLD;
    END IF;
    IF EXISTS (SELECT FROM vecplug.failed f WHERE f.vectorizer_id = v.id AND f.source = v.source) THEN
        EXECUTE format('DELETE FROM vecplug.failed f USING %s AS o WHERE f.vectorizer_id = $1 AND f.source = $2 '
                       'AND f.pk = %s', deleted, vecplug._key_array(v.key_columns, 'o'))
            USING v.id, v.source::oid, OLD;
    END IF;
    -- Statements not spread yet that queued a deleted row: written again without it, by a role that may
    -- queue rows of this table (one that may only delete leaves them: the worker finds those rows gone).
    -- Only the statements holding a deleted key are rewritten; those a worker holds are skipped.
    IF TG_LEVEL = 'STATEMENT' AND has_any_column_privilege(v.source, 'INSERT, UPDATE')
       AND EXISTS (SELECT FROM vecplug.queued_statements s WHERE s.vectorizer_id = v.id AND s.source = v.source) THEN
        EXECUTE format('WITH deleted AS (SELECT %1$s AS pk FROM vecplug_old o), '
                       'hit AS (SELECT s.id FROM vecplug.queued_statements s WHERE s.vectorizer_id = $1 AND s.source = $2 '
                       '        AND s.keys && (SELECT array_agg(e) FROM deleted, unnest(deleted.pk) AS e) '
                       '        FOR UPDATE OF s SKIP LOCKED), '
                       'taken AS (DELETE FROM vecplug.queued_statements s USING hit WHERE s.id = hit.id RETURNING s.*) '
                       'INSERT INTO vecplug.queued_statements (vectorizer_id, source, keys, queued_at) '
                       'SELECT t.vectorizer_id, t.source, array_agg(k.pk ORDER BY k.line), t.queued_at '
                       'FROM taken t CROSS JOIN LATERAL vecplug._statement_keys(t.keys) k '
                       'WHERE NOT EXISTS (SELECT FROM deleted d WHERE d.pk = k.pk) '
                       'GROUP BY t.id, t.vectorizer_id, t.source, t.queued_at ORDER BY t.id',
                       vecplug._key_array(v.key_columns, 'o'))
            USING v.id, v.source::oid;
    END IF;
    RETURN NULL;
END
$$;

-- AFTER TRUNCATE: all of the vectorizer's queued and failed work goes.
CREATE OR REPLACE FUNCTION vecplug._forget_all() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
BEGIN
    DELETE FROM vecplug.queue WHERE vectorizer_id = v.id AND source = v.source;
    DELETE FROM vecplug.queued_statements WHERE vectorizer_id = v.id AND source = v.source;
    DELETE FROM vecplug.failed WHERE vectorizer_id = v.id AND source = v.source;
    RETURN NULL;
END
$$;

-- Queue every row that has text and no vector (for a chunked vectorizer: no
-- chunk in its destination): enqueue_existing, rows the new model missed at a
-- re-embedding's swap. Runs as the caller: the table's owner
-- (create_vectorizer and finish_reembed check that).
CREATE OR REPLACE FUNCTION vecplug._enqueue_rows_without_vector(vectorizer_id integer) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'postgres'
SET timezone = 'UTC'
SET extra_float_digits = 3
SET bytea_output = 'hex'
SET lc_monetary = 'C'
AS $$
DECLARE
    v vecplug.vectorizer_columns;
    d record;
    missing text;
    queued bigint;
BEGIN
    SELECT * INTO STRICT v FROM vecplug.vectorizer_columns c WHERE c.id = vectorizer_id;
    IF v.chunk_tokens IS NULL THEN
        missing := format('t.%I IS NULL', v.embedding_column);
    ELSE
        d := vecplug._destination(v);
        missing := format('NOT EXISTS (SELECT FROM %I.%I d WHERE %s)', d.schema_name, d.table_name,
                          (SELECT string_agg(format('d.%I = t.%I', dk, sk), ' AND ')
                           FROM unnest(d.key_columns, v.key_columns) AS k (dk, sk)));
    END IF;
    EXECUTE format('INSERT INTO vecplug.queue (vectorizer_id, source, pk) SELECT $1, $2, %s FROM %s t '
                   'WHERE t.%I IS NOT NULL AND %s',
                   vecplug._key_array(v.key_columns, 't'), v.source, v.text_column, missing)
        USING v.id, v.source::oid;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('vecplug_queue', v.id::text);
    END IF;
    RETURN queued;
END
$$;

-- The rows of an INSERT or UPDATE statement a chunked vectorizer must (re)chunk: for an INSERT
-- those with text; for an UPDATE those whose text, format columns or key changed (a text set to
-- NULL too: its old chunks must go); for 'ROW', the row $3 (a row trigger's WHEN chose it). A
-- query over the transition tables selecting `pk`, `body` (the bare text) and `format_values`
-- (jsonb, what vecplug._fill_format takes).
CREATE OR REPLACE FUNCTION vecplug._chunk_rows_query(v vecplug.vectorizer_columns, operation text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('SELECT %s AS pk, n.%I::text AS body, %s AS format_values FROM %s WHERE ',
                  vecplug._key_array(v.key_columns, 'n'), v.text_column,
                  coalesce((SELECT 'jsonb_build_object(' || string_agg(format('%L, n.%I::text', name, col), ', ') || ')'
                            FROM unnest(vecplug._format_names(v.format), vecplug._format_columns(v)) AS f (name, col)),
                           '''{}''::jsonb'),
                  CASE WHEN operation = 'ROW' THEN '(SELECT ($3).*) AS n' ELSE 'vecplug_new n' END)
        || CASE WHEN operation = 'ROW' THEN 'true'
                WHEN operation = 'UPDATE' THEN
               format('NOT EXISTS (SELECT FROM vecplug_old o WHERE %s AND %s IS NOT DISTINCT FROM %s)',
                      vecplug._key_join(v.key_columns, 'o', 'n'), vecplug._watched_row(v, 'o'),
                      vecplug._watched_row(v, 'n'))
           ELSE format('n.%I IS NOT NULL', v.text_column) END
$$;

-- Firing a trigger needs no privilege; creating one needs EXECUTE on its
-- function, which only vecplug's owner has (through create_vectorizer).
-- A table owner attaching one by other means would still fail in
-- _trigger_vectorizer, and they run with the writer's rights anyway.
REVOKE ALL ON FUNCTION vecplug._queue_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION vecplug._clear_vector() FROM PUBLIC;
REVOKE ALL ON FUNCTION vecplug._forget_deleted() FROM PUBLIC;
REVOKE ALL ON FUNCTION vecplug._forget_all() FROM PUBLIC;
