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

-- Runs as the caller (the table's owner, which _create_vectorizer checks):
-- queueing the rows already there reads the table and turns keys into
-- text, which may run the owner's code (casts, policies): never as vecplug's owner.
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
    model text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id integer := vecplug._create_vectorizer(source, text_column, embedding_column, mode, dimensions, storage,
                                                 index, enqueue_existing, on_error, model);
BEGIN
    IF enqueue_existing THEN
        PERFORM vecplug._enqueue_rows_without_vector(new_id);
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION vecplug.create_vectorizer(regclass, name, name, text, integer, text, text, boolean, text, text) IS
    'Embed text_column of source into embedding_column on insert and update; returns the vectorizer''s id';
GRANT EXECUTE ON FUNCTION vecplug.create_vectorizer(regclass, name, name, text, integer, text, text, boolean, text, text)
    TO PUBLIC;

-- Remove a vectorizer: its triggers and its queued and failed work. The
-- vector column and its index stay (the vectors are still good) unless
-- drop_column. Returns how many queued rows were dropped with it.
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
    IF v.next_column IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', v.source, v.next_column);
    END IF;
    IF coalesce(drop_column, false) AND v.embedding_column IS NOT NULL THEN
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
