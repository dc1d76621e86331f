-- What `vecplug pg worker` (and `vecplug pg reembed`) may do, and the only
-- way they touch vecplug's queue. Plain plpgsql; repeatable.
--
-- The worker reads a table's texts and writes its vectors as the role it
-- connects as, and those writes fire the table's own code: its triggers,
-- defaults, CHECK constraints, index expressions, casts of its key type,
-- domain checks, row-level security policies. That code belongs to the
-- table's owner. So a worker serves a table only when the owner already
-- holds every right the worker's role has (the same role, a role the owner
-- is a member of, or both superusers), and the role may read the key and
-- text columns and write the vector column; otherwise the owner's code would
-- run with rights its owner lacks. vecplug.worker_refusal says why not, in
-- words; the functions below refuse the same way.
--
-- These functions run as vecplug's owner and touch only vecplug's tables:
-- keys stay text, nothing of the user's table is read or evaluated here.

-- NULL when `worker` (default: the session's login role) may serve the
-- vectorizer; otherwise why not, and what to do.
CREATE OR REPLACE FUNCTION vecplug.worker_refusal(vectorizer_id integer, worker name DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns;
    role_name name := coalesce(worker, session_user);
    w pg_roles;
    relation record;
    hidden regclass;
    attribute text;
    missing text[];
BEGIN
    SELECT * INTO v FROM vecplug.vectorizer_columns c WHERE c.id = vectorizer_id;
    IF v.id IS NULL THEN
        RETURN format('there is no vectorizer %s', vectorizer_id);
    END IF;
    IF vecplug._vectorizer_problem(v) IS NOT NULL THEN
        RETURN format('vectorizer %s is broken: %s', v.name, vecplug._vectorizer_problem(v));
    END IF;
    SELECT * INTO w FROM pg_roles WHERE rolname = role_name;
    -- the table and every partition below it: a write through the table fires the partitions' own code
    FOR relation IN SELECT c.oid::regclass AS relid, c.relowner::regrole AS owner, o.*
                    FROM pg_class c JOIN pg_roles o ON o.oid = c.relowner
                    WHERE c.oid = v.source OR c.oid IN (SELECT p.relid FROM pg_partition_tree(v.source) p)
                       OR c.oid = v.destination LOOP  -- a chunked vectorizer's writes fire its destination's code
        SELECT a.label INTO attribute FROM (VALUES
                ('a superuser', w.rolsuper, relation.rolsuper),
                ('allowed to bypass row-level security (BYPASSRLS)', w.rolbypassrls, relation.rolbypassrls),
                ('allowed to create roles (CREATEROLE)', w.rolcreaterole, relation.rolcreaterole),
                ('allowed to create databases (CREATEDB)', w.rolcreatedb, relation.rolcreatedb),
                ('a replication role (REPLICATION)', w.rolreplication, relation.rolreplication)
            ) AS a (label, worker_has, owner_has)
        WHERE a.worker_has AND NOT a.owner_has LIMIT 1;
        IF attribute IS NOT NULL THEN
            RETURN format('role %I is %s and %s, who owns %s, is not: the code %s attached to that table '
                          '(triggers, defaults, casts, policies) would run with that right. Run a worker that '
                          'connects as %s for this vectorizer', role_name, attribute, relation.owner,
                          relation.relid::regclass, relation.owner, relation.owner);
        END IF;
        IF NOT pg_has_role(relation.owner, w.oid, 'USAGE') THEN
            RETURN format('role %I holds rights that %s, who owns %s, does not: the code %s attached to its table '
                          '(triggers, defaults, casts, policies) would run with them. Run a worker that connects as '
                          '%s, or as a role %s is a member of', role_name, relation.owner, relation.relid::regclass,
                          relation.owner, relation.owner, relation.owner);
        END IF;
    END LOOP;
    SELECT c.oid::regclass INTO hidden FROM pg_class c
    WHERE c.oid IN (v.source, v.destination) AND c.relrowsecurity
      AND (c.relforcerowsecurity OR NOT pg_has_role(w.oid, c.relowner, 'USAGE')) AND NOT (w.rolbypassrls OR w.rolsuper)
    LIMIT 1;
    IF hidden IS NOT NULL THEN  -- (a hidden chunk would be left stale, or collide with a new one)
        RETURN format('row-level security on %s may hide rows from role %I, and a hidden row must not pass for a '
                      'deleted one: connect the worker as the table''s owner (and do not FORCE ROW LEVEL SECURITY)',
                      hidden, role_name);
    END IF;
    SELECT array_agg(format('%s (%I)', privilege, column_name)) INTO missing
    FROM (SELECT 'SELECT' AS privilege, unnest(v.key_columns || vecplug._watched_columns(v)) AS column_name
          UNION ALL SELECT 'UPDATE', v.embedding_column WHERE v.destination IS NULL
          UNION ALL SELECT 'UPDATE', v.next_column WHERE v.next_column IS NOT NULL AND v.destination IS NULL) needed
    WHERE NOT has_column_privilege(w.oid, v.source, column_name, privilege);
    IF missing IS NOT NULL THEN
        RETURN format('role %I may not read or write what it needs of %s: GRANT %s ON %s TO %I', role_name,
                      v.source, array_to_string(missing, ', '), v.source, role_name);
    END IF;
    IF v.destination IS NOT NULL THEN  -- the chunks: old ones deleted, new ones inserted
        SELECT array_agg(privilege) INTO missing FROM unnest(ARRAY['SELECT', 'INSERT', 'DELETE']) AS privilege
        WHERE NOT has_table_privilege(w.oid, v.destination, privilege);
        IF missing IS NOT NULL THEN
            RETURN format('role %I may not write the chunks of %s: GRANT %s ON %s TO %I', role_name, v.source,
                          array_to_string(missing, ', '), v.destination, role_name);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION vecplug.worker_refusal(integer, name) IS
    'Why a worker connecting as this role (default: the session''s) may not serve the vectorizer, or NULL';
GRANT EXECUTE ON FUNCTION vecplug.worker_refusal(integer, name) TO PUBLIC;

-- Raise unless the session's role may serve the vectorizer; returns its row, locked FOR SHARE (so a
-- re-embedding's swap waits for the batch), or NULL when it is gone.
CREATE OR REPLACE FUNCTION vecplug._authorize_worker(vectorizer_id integer) RETURNS vecplug.vectorizer_columns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found vecplug.vectorizer_columns;
    refusal text;
BEGIN
    PERFORM 1 FROM vecplug.vectorizers v WHERE v.id = vectorizer_id FOR SHARE;
    SELECT * INTO found FROM vecplug.vectorizer_columns c WHERE c.id = vectorizer_id;
    IF found.id IS NULL OR NOT found.table_exists THEN
        RETURN NULL;
    END IF;
    refusal := vecplug.worker_refusal(vectorizer_id, session_user);
    IF refusal IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: role % may not serve vectorizer %: %', session_user, found.name, refusal
            USING ERRCODE = '42501';
    END IF;
    RETURN found;
END
$$;
REVOKE ALL ON FUNCTION vecplug._authorize_worker(integer) FROM PUBLIC;

-- Spread the vectorizer's queued statements (migration 0005) into vecplug.queue, one row per key, in
-- order, keeping when they were queued; those another worker is spreading are skipped. A key that
-- several of them queued (inserted, then updated) gets one row: none was claimed yet, and the worker
-- reads the text current when it claims. In the claiming transaction: a batch rolled back puts them
-- back as they were.
CREATE OR REPLACE FUNCTION vecplug._spread_queued_statements(v vecplug.vectorizer_columns) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH taken AS (
        DELETE FROM vecplug.queued_statements s WHERE s.id IN (
            SELECT t.id FROM vecplug.queued_statements t WHERE t.vectorizer_id = v.id AND t.source = v.source
            FOR UPDATE SKIP LOCKED)
        RETURNING s.*)
    INSERT INTO vecplug.queue (vectorizer_id, source, pk, queued_at)
    SELECT first.vectorizer_id, first.source, first.pk, first.queued_at
    FROM (SELECT DISTINCT ON (k.pk) t.vectorizer_id, t.source, k.pk, t.queued_at, t.id, k.line
          FROM taken t CROSS JOIN LATERAL vecplug._statement_keys(t.keys) k ORDER BY k.pk, t.id, k.line) first
    ORDER BY first.id, first.line
$$;
REVOKE ALL ON FUNCTION vecplug._spread_queued_statements(vecplug.vectorizer_columns) FROM PUBLIC;

-- Lock up to batch_size due queue rows of the vectorizer (SKIP LOCKED: each worker its own rows),
-- after spreading its queued statements.
CREATE OR REPLACE FUNCTION vecplug.claim_batch(vectorizer_id integer, batch_size integer)
RETURNS TABLE (queue_id bigint, pk text[], attempts integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._authorize_worker(vectorizer_id);
BEGIN
    IF v.id IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM vecplug.queued_statements s WHERE s.vectorizer_id = v.id) THEN
        PERFORM vecplug._spread_queued_statements(v);
    END IF;
    RETURN QUERY SELECT q.id, q.pk, q.attempts FROM vecplug.queue q
        WHERE q.vectorizer_id = v.id AND q.source = v.source AND (q.retry_after IS NULL OR q.retry_after <= now())
        ORDER BY q.id LIMIT batch_size FOR UPDATE SKIP LOCKED;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.claim_batch(integer, integer) TO PUBLIC;

-- The end of a batch: its done queue rows go, failures of keys that went through are forgotten,
-- and what was done is logged. succeeded_keys: a JSON array of key arrays (text).
CREATE OR REPLACE FUNCTION vecplug.finish_batch(vectorizer_id integer, done_queue_ids bigint[], embedded bigint,
                                                truncated bigint, error text, succeeded_keys jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._authorize_worker(vectorizer_id);
BEGIN
    IF v.id IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM vecplug.queue q WHERE q.vectorizer_id = v.id AND q.id = ANY (done_queue_ids);
    IF jsonb_array_length(coalesce(succeeded_keys, '[]')) > 0
       AND EXISTS (SELECT FROM vecplug.failed f WHERE f.vectorizer_id = v.id) THEN
        DELETE FROM vecplug.failed f WHERE f.vectorizer_id = v.id AND f.pk IN
            (SELECT ARRAY(SELECT jsonb_array_elements_text(k)) FROM jsonb_array_elements(succeeded_keys) AS k);
    END IF;
    INSERT INTO vecplug.activity (vectorizer_id, embedded, truncated, error)
    VALUES (v.id, coalesce(embedded, 0), coalesce(truncated, 0), error);
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.finish_batch(integer, bigint[], bigint, bigint, text, jsonb) TO PUBLIC;

-- A row failed on its own: an attempt and a backoff for its queue rows; past max_attempts they
-- move to vecplug.failed with the error. Returns how many table rows moved.
CREATE OR REPLACE FUNCTION vecplug.record_row_failure(vectorizer_id integer, queue_ids bigint[], message text,
                                                      max_attempts integer, retry_delay double precision,
                                                      max_retry_delay double precision)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._authorize_worker(vectorizer_id);
    moved bigint;
BEGIN
    IF v.id IS NULL THEN
        RETURN 0;
    END IF;
    UPDATE vecplug.queue q SET attempts = q.attempts + 1, last_error = message,
        retry_after = now() + make_interval(secs => least(max_retry_delay, retry_delay * power(2, q.attempts)))
    WHERE q.vectorizer_id = v.id AND q.id = ANY (queue_ids);
    WITH moved_rows AS (DELETE FROM vecplug.queue q WHERE q.vectorizer_id = v.id AND q.id = ANY (queue_ids)
                        AND q.attempts >= max_attempts
                        RETURNING q.vectorizer_id, q.source, q.pk, q.queued_at, q.attempts, q.last_error)
    INSERT INTO vecplug.failed (vectorizer_id, source, pk, queued_at, attempts, error)
    SELECT m.vectorizer_id, m.source, m.pk, min(m.queued_at), max(m.attempts), min(m.last_error) FROM moved_rows m
    GROUP BY m.vectorizer_id, m.source, m.pk;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.record_row_failure(integer, bigint[], text, integer, double precision,
                                                     double precision) TO PUBLIC;

-- A worker that will not serve a vectorizer says why in vecplug.status (last_error). The reason
-- is vecplug's own (worker_refusal), or, for a worker allowed to serve it, the worker's message.
CREATE OR REPLACE FUNCTION vecplug.record_refusal(vectorizer_id integer, message text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    refusal text := vecplug.worker_refusal(vectorizer_id, session_user);
BEGIN
    IF NOT EXISTS (SELECT FROM vecplug.vectorizers v WHERE v.id = vectorizer_id) THEN
        RETURN;
    END IF;
    IF refusal IS NULL AND message IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO vecplug.activity (vectorizer_id, error)
    VALUES (vectorizer_id, 'worker refused: ' || CASE WHEN refusal IS NOT NULL  -- (format() makes no NULL of one)
                                                      THEN format('role %s may not serve it: %s', session_user, refusal)
                                                      ELSE message END);
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.record_refusal(integer, text) TO PUBLIC;

-- Housekeeping, one worker at a time: fold each vectorizer's activity rows older than a minute into
-- one sum row and one row for the latest error, and drop queue rows that name another table than
-- their vectorizer's (nothing claims them; only a role writing to some table could add them).
CREATE OR REPLACE FUNCTION vecplug.fold_activity() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('vecplug fold activity')) THEN
        RETURN;
    END IF;
    WITH old AS (
        DELETE FROM vecplug.activity WHERE at < now() - interval '1 minute' RETURNING *
    ), sums AS (
        INSERT INTO vecplug.activity (vectorizer_id, embedded, truncated, at)
        SELECT vectorizer_id, sum(embedded), sum(truncated), max(at) FROM old GROUP BY vectorizer_id
    )
    INSERT INTO vecplug.activity (vectorizer_id, error, at)
    SELECT DISTINCT ON (vectorizer_id) vectorizer_id, error, at FROM old WHERE error IS NOT NULL
    ORDER BY vectorizer_id, at DESC;
    DELETE FROM vecplug.queue q USING vecplug.vectorizers v WHERE v.id = q.vectorizer_id AND q.source <> v.source;
    DELETE FROM vecplug.queued_statements s USING vecplug.vectorizers v
    WHERE v.id = s.vectorizer_id AND s.source <> v.source;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.fold_activity() TO PUBLIC;

-- Re-create the triggers of every vectorizer (of one mode, or all): an upgrade's new trigger
-- functions take effect on tables made by an older version. A table vecplug's owner may no
-- longer alter is skipped with a warning naming it.
CREATE OR REPLACE FUNCTION vecplug._recreate_all_triggers(only_mode text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns;
BEGIN
    FOR v IN SELECT * FROM vecplug.vectorizer_columns c
             WHERE c.table_exists AND (only_mode IS NULL OR c.mode = only_mode) ORDER BY c.id LOOP
        IF vecplug._vectorizer_problem(v) IS NULL THEN
            BEGIN
                PERFORM vecplug._vectorizer_triggers(v.id);
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'vecplug: could not renew the triggers of vectorizer % (%): %', v.id, v.name, SQLERRM;
            END;
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION vecplug._recreate_all_triggers(text) FROM PUBLIC;
DO $$ BEGIN PERFORM vecplug._recreate_all_triggers('async'); END $$;

-- A vectorizer created before its model was known takes the model of the first worker allowed to
-- serve it: its name and fingerprint, recorded for the column too. Returns whether it was pinned now.
CREATE OR REPLACE FUNCTION vecplug.pin_model(vectorizer_id integer, model text, model_fingerprint text, spec jsonb)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._authorize_worker(vectorizer_id);
    pinned oid;
BEGIN
    IF v.id IS NULL THEN
        RETURN false;
    END IF;
    UPDATE vecplug.vectorizers SET model = pin_model.model, model_fingerprint = pin_model.model_fingerprint
    WHERE id = v.id AND vecplug.vectorizers.model_fingerprint IS NULL
    RETURNING coalesce(destination, source)::oid INTO pinned;  -- where the vectors are
    IF pinned IS NULL THEN
        RETURN false;
    END IF;
    INSERT INTO vecplug.embedding_columns (table_oid, column_name, model) VALUES (pinned, v.embedding_column, spec)
    ON CONFLICT DO NOTHING;
    RETURN true;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.pin_model(integer, text, text, jsonb) TO PUBLIC;
