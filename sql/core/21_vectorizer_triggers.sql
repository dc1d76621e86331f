-- The trigger functions of async vectorizers (plain plpgsql; installs on
-- managed PostgreSQL). Repeatable. The sync mode's is query/20_sync.sql.
--
-- They run as vecplug's owner (SECURITY DEFINER), so that any role allowed
-- to write the table can queue work without rights on vecplug's tables. A
-- table owner could attach them to another table: each checks that the
-- vectorizer named in its arguments belongs to the table it fires on.
--
-- Statement-level triggers with transition tables: one INSERT into the
-- queue per statement, whatever its row count. They insert and never wait
-- on a worker's row locks (a row may be queued twice; see 0002_vectorizers.sql).

-- The vectorizer a trigger belongs to, checked against the table it fires on.
CREATE OR REPLACE FUNCTION vecplug._trigger_vectorizer(vectorizer_argument text, fired_on oid, trigger_name name)
RETURNS vecplug.vectorizer_columns
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found vecplug.vectorizer_columns;
BEGIN
    SELECT * INTO found FROM vecplug.vectorizer_columns WHERE id = vectorizer_argument::integer;
    IF found.id IS NULL OR found.source <> fired_on THEN
        RAISE EXCEPTION 'vecplug: trigger % on table % does not belong to vectorizer %', trigger_name,
            fired_on::regclass, vectorizer_argument USING ERRCODE = '39P01',
            HINT = 'Drop that trigger; vectorizers create their own with vecplug.create_vectorizer().';
    END IF;
    RETURN found;
END
$$;
REVOKE ALL ON FUNCTION vecplug._trigger_vectorizer(text, oid, name) FROM PUBLIC;

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
-- UPDATE a text that changed (or a key that did). A query over the trigger's
-- transition tables vecplug_new / vecplug_old, selecting `pk` and `body`.
CREATE OR REPLACE FUNCTION vecplug._changed_rows_query(v vecplug.vectorizer_columns, operation text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('SELECT %s AS pk, n.%I::text AS body FROM vecplug_new n WHERE n.%I IS NOT NULL AND n.%I IS NULL',
                  vecplug._key_array(v.key_columns, 'n'), v.text_column, v.text_column, v.embedding_column)
        || CASE WHEN operation = 'UPDATE' THEN
               format(' AND NOT EXISTS (SELECT FROM vecplug_old o WHERE %s AND o.%I IS NOT DISTINCT FROM n.%I)',
                      vecplug._key_join(v.key_columns, 'o', 'n'), v.text_column, v.text_column)
           ELSE '' END
$$;
REVOKE ALL ON FUNCTION vecplug._changed_rows_query(vecplug.vectorizer_columns, text) FROM PUBLIC;

-- AFTER INSERT / UPDATE, per statement (async): queue the rows that need a vector, wake the workers.
CREATE OR REPLACE FUNCTION vecplug._queue_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
    queued bigint;
BEGIN
    EXECUTE 'INSERT INTO vecplug.queue (vectorizer_id, pk) SELECT $1, changed.pk FROM ('
            || vecplug._changed_rows_query(v, TG_OP) || ') AS changed' USING v.id;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('vecplug_queue', v.id::text);
    END IF;
    RETURN NULL;
END
$$;

-- BEFORE UPDATE OF the text column, per row whose text changed: clear the
-- vector (argument 'current') or the shadow column of a re-embedding ('next').
CREATE OR REPLACE FUNCTION vecplug._clear_vector() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    column_name name;
BEGIN
    -- On a partitioned table the row trigger fires on the partition: the vectorizer is the root's.
    SELECT a.attname INTO column_name FROM vecplug.vectorizers v JOIN pg_attribute a
        ON a.attrelid = v.source AND a.attnum = CASE TG_ARGV[1] WHEN 'next' THEN v.next_attnum ELSE v.embedding_attnum END
    WHERE v.id = TG_ARGV[0]::integer AND (v.source = TG_RELID OR v.source = pg_partition_root(TG_RELID));
    IF column_name IS NOT NULL THEN
        NEW := jsonb_populate_record(NEW, jsonb_build_object(column_name, NULL));
    END IF;
    RETURN NEW;
END
$$;

-- AFTER DELETE, per statement: the deleted rows' queued and failed work goes
-- too. Queue rows a worker holds are skipped, not waited for: that worker
-- finds the row gone and drops them itself.
CREATE OR REPLACE FUNCTION vecplug._forget_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
BEGIN
    IF EXISTS (SELECT FROM vecplug.queue WHERE vectorizer_id = v.id) THEN
        EXECUTE format('DELETE FROM vecplug.queue WHERE id IN (SELECT q.id FROM vecplug.queue q JOIN vecplug_old o '
                       'ON q.pk = %s WHERE q.vectorizer_id = $1 FOR UPDATE OF q SKIP LOCKED)',
                       vecplug._key_array(v.key_columns, 'o'))
            USING v.id;
    END IF;
    IF EXISTS (SELECT FROM vecplug.failed WHERE vectorizer_id = v.id) THEN
        EXECUTE format('DELETE FROM vecplug.failed f USING vecplug_old o WHERE f.vectorizer_id = $1 AND f.pk = %s',
                       vecplug._key_array(v.key_columns, 'o'))
            USING v.id;
    END IF;
    RETURN NULL;
END
$$;

-- AFTER TRUNCATE: all of the vectorizer's queued and failed work goes.
CREATE OR REPLACE FUNCTION vecplug._forget_all() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
BEGIN
    DELETE FROM vecplug.queue WHERE vectorizer_id = v.id;
    DELETE FROM vecplug.failed WHERE vectorizer_id = v.id;
    RETURN NULL;
END
$$;

-- Nobody attaches these to other tables: only vecplug's owner (through
-- create_vectorizer) creates triggers with them. Firing needs no privilege.
REVOKE ALL ON FUNCTION vecplug._queue_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION vecplug._clear_vector() FROM PUBLIC;
REVOKE ALL ON FUNCTION vecplug._forget_deleted() FROM PUBLIC;
REVOKE ALL ON FUNCTION vecplug._forget_all() FROM PUBLIC;
