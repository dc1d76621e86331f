-- Changing a vectorizer's model without downtime (what `vecplug pg reembed`
-- drives; usable from SQL too). Plain plpgsql. Repeatable.
--
--   SELECT vecplug.begin_reembed('docs', 'embedding', 'new-model', '<fingerprint>', 768);
--       adds the shadow column embedding_vecplug_next; queries keep using embedding
--   UPDATE docs SET embedding_vecplug_next = ... ;   -- every row (vecplug pg reembed does this in batches)
--   SELECT vecplug.finish_reembed('docs', 'embedding');
--       in one transaction: the shadow column becomes embedding (with its index), the
--       vectorizer records the new model, the old vectors go
--
-- While it runs, a changed text clears both columns, the worker keeps
-- filling the current one with the current model, and the shadow column is
-- caught up before the swap.
--
-- A chunked vectorizer re-embeds into a shadow destination table instead,
-- <destination>_vecplug_next (made by begin_reembed, given to the source's
-- owner), shaped like the destination plus a column vecplug_text_md5: each
-- row filled there has its chunks and one marker row (chunk_index -1, no
-- vector) holding the md5 of the text (and format columns) it was cut from,
-- so a text changed since is found again by comparing md5s: the writers'
-- triggers do not change, and need no rights on the shadow table. Queries
-- and workers keep using the old destination; finish_reembed swaps the
-- shadow table in (the markers and the md5 column go, its HNSW index is
-- built, the view is made again over it) and the old table goes.

-- begin_reembed of a chunked vectorizer: the shadow table <destination>_vecplug_next, shaped like the
-- destination (its key, chunk columns, the foreign key to the source), with the new model's vector
-- column and vecplug_text_md5; given to the source's owner. Runs as vecplug's owner (begin_reembed).
CREATE OR REPLACE FUNCTION vecplug._begin_chunk_reembed(v vecplug.vectorizer_columns, model text,
                                                        model_fingerprint text, dimensions integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record := vecplug._destination(v);
    shadow_name text := left(d.table_name, 50) || '_vecplug_next';
    shadow regclass;
    vector_attnum smallint;
BEGIN
    IF to_regclass(format('%I.%I', d.schema_name, shadow_name)) IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: table %.% exists already', quote_ident(d.schema_name), quote_ident(shadow_name)
            USING ERRCODE = '42P07', HINT = 'Rename or drop it; vecplug uses that name for the re-embedding.';
    END IF;
    SELECT m.chunks INTO shadow FROM vecplug._make_chunk_table(v.source, format('%I.%I', d.schema_name, shadow_name)) m;
    EXECUTE format('ALTER TABLE %s ADD COLUMN vecplug_text_md5 text', shadow);
    vector_attnum := vecplug._ensure_vector_column(shadow, v.embedding_column, v.storage, dimensions);
    UPDATE vecplug.vectorizers SET next_destination = shadow, next_attnum = vector_attnum,
        next_model = _begin_chunk_reembed.model, next_model_fingerprint = _begin_chunk_reembed.model_fingerprint,
        next_dimensions = _begin_chunk_reembed.dimensions
    WHERE id = v.id;
END
$$;
REVOKE ALL ON FUNCTION vecplug._begin_chunk_reembed(vecplug.vectorizer_columns, text, text, integer) FROM PUBLIC;

-- The swap of a chunked vectorizer (_swap_reembed, as vecplug's owner; finish_reembed has locked the
-- source against writers): the shadow table loses its markers and md5 column, gets the HNSW index,
-- and takes the destination's name; the old destination and its view go (not CASCADE: an object of
-- the user's that depends on them makes it fail, naming it); the view is made again.
CREATE OR REPLACE FUNCTION vecplug._swap_chunk_reembed(v vecplug.vectorizer_columns) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record := vecplug._destination(v);
    old_index name;
    new_index regclass;
BEGIN
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v.destination);
    EXECUTE format('DELETE FROM %s WHERE chunk_index = -1', v.next_destination);
    EXECUTE format('ALTER TABLE %s DROP COLUMN vecplug_text_md5', v.next_destination);
    IF v.index = 'hnsw' THEN
        PERFORM vecplug._ensure_vector_index(v.next_destination, v.next_attnum, v.storage);
    END IF;
    SELECT ic.relname INTO old_index FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = v.destination AND i.indkey[0] = v.embedding_attnum AND am.amname IN ('hnsw', 'ivfflat') LIMIT 1;
    SELECT i.indexrelid::regclass INTO new_index FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = v.next_destination AND i.indkey[0] = v.next_attnum AND am.amname IN ('hnsw', 'ivfflat') LIMIT 1;
    PERFORM vecplug._drop_chunk_table(v);  -- the old destination and its view
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v.next_destination, d.table_name);
    IF old_index IS NOT NULL AND new_index IS NOT NULL THEN
        EXECUTE format('ALTER INDEX %s RENAME TO %I', new_index, old_index);
    END IF;
    UPDATE vecplug.vectorizers SET destination = next_destination, embedding_attnum = next_attnum, model = next_model,
        model_fingerprint = next_model_fingerprint, dimensions = next_dimensions, next_destination = NULL,
        next_attnum = NULL, next_model = NULL, next_model_fingerprint = NULL, next_dimensions = NULL
    WHERE id = v.id;
    INSERT INTO vecplug.embedding_columns (table_oid, column_name, model)
    VALUES (v.next_destination, v.embedding_column, jsonb_build_object('name', v.next_model,
            'fingerprint', v.next_model_fingerprint, 'dimensions', v.next_dimensions))
    ON CONFLICT (table_oid, column_name) DO UPDATE SET model = EXCLUDED.model, recorded_at = now();
    DELETE FROM vecplug.queue WHERE vectorizer_id = v.id;
    DELETE FROM vecplug.queued_statements WHERE vectorizer_id = v.id;
    DELETE FROM vecplug.failed WHERE vectorizer_id = v.id;
    PERFORM vecplug._vectorizer_triggers(v.id);
    PERFORM vecplug._make_chunk_view(v.id);
END
$$;
REVOKE ALL ON FUNCTION vecplug._swap_chunk_reembed(vecplug.vectorizer_columns) FROM PUBLIC;

CREATE OR REPLACE FUNCTION vecplug.begin_reembed(
    source regclass,
    embedding_column name,
    model text,
    model_fingerprint text,
    dimensions integer
) RETURNS name
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._vectorizer_for_update(source, embedding_column, 'start a re-embedding');
    shadow name;
    shadow_attnum smallint;
    max_index_dimensions integer;
BEGIN
    IF model IS NULL OR model_fingerprint IS NULL OR dimensions IS NULL OR dimensions < 1 THEN
        RAISE EXCEPTION 'vecplug: begin_reembed needs the new model''s name, fingerprint and dimensions'
            USING ERRCODE = '22023';
    END IF;
    max_index_dimensions := (CASE v.storage WHEN 'vector' THEN 2000 ELSE 4000 END);
    IF v.index = 'hnsw' AND dimensions > max_index_dimensions THEN
        RAISE EXCEPTION 'vecplug: pgvector''s HNSW index takes at most % dimensions of %, not %',
            max_index_dimensions, v.storage, dimensions USING ERRCODE = '22023';
    END IF;
    IF v.next_column IS NOT NULL THEN
        IF v.next_model_fingerprint = model_fingerprint AND v.next_dimensions = dimensions THEN
            RETURN v.next_column;  -- resuming
        END IF;
        RAISE EXCEPTION 'vecplug: % is already being re-embedded, to % (% dimensions)', v.name, v.next_model,
            v.next_dimensions USING ERRCODE = '55000',
            HINT = format('Finish that one, or cancel it: SELECT vecplug.cancel_reembed(%L, %L);', v.source,
                          v.embedding_column);
    END IF;
    IF v.destination IS NOT NULL THEN
        PERFORM vecplug._begin_chunk_reembed(v, model, model_fingerprint, dimensions);
        RETURN (SELECT relname FROM pg_class WHERE oid = (SELECT next_destination FROM vecplug.vectorizers
                                                          WHERE id = v.id));
    END IF;
    shadow := left(v.embedding_column, 49) || '_vecplug_next';
    IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = v.source AND attname = shadow AND NOT attisdropped) THEN
        RAISE EXCEPTION 'vecplug: table % already has a column %', v.source, quote_ident(shadow)
            USING ERRCODE = '42701', HINT = 'Rename or drop it; vecplug uses that name for the re-embedding.';
    END IF;
    shadow_attnum := vecplug._ensure_vector_column(v.source, shadow, v.storage, dimensions);
    UPDATE vecplug.vectorizers SET next_attnum = shadow_attnum, next_model = begin_reembed.model,
        next_model_fingerprint = begin_reembed.model_fingerprint, next_dimensions = begin_reembed.dimensions
    WHERE id = v.id;
    PERFORM vecplug._vectorizer_triggers(v.id);
    RETURN shadow;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.begin_reembed(regclass, name, text, text, integer) TO PUBLIC;

-- Raise unless a re-embedding of the vectorizer is in progress (both halves of the swap check it:
-- the privileged one may be called alone).
CREATE OR REPLACE FUNCTION vecplug._require_reembedding(v vecplug.vectorizer_columns) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF v.next_column IS NULL THEN
        RAISE EXCEPTION 'vecplug: % is not being re-embedded', v.name USING ERRCODE = '55000',
            HINT = 'Start with vecplug pg reembed (or vecplug.begin_reembed).';
    END IF;
END
$$;

-- A vectorizer, locked FOR UPDATE for the caller's transaction, after the
-- owner check (what the SECURITY INVOKER functions below use).
CREATE OR REPLACE FUNCTION vecplug._lock_vectorizer(source regclass, embedding_column name, action text)
RETURNS vecplug.vectorizer_columns
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM vecplug._vectorizer_for_update(source, embedding_column, action)
$$;
GRANT EXECUTE ON FUNCTION vecplug._lock_vectorizer(regclass, name, text) TO PUBLIC;

-- The privileged half of the swap: the index, the columns, vecplug's records.
CREATE OR REPLACE FUNCTION vecplug._swap_reembed(source regclass, embedding_column name) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._vectorizer_for_update(source, embedding_column, 'finish a re-embedding');
    old_index name;
    new_index regclass;
BEGIN
    PERFORM vecplug._require_reembedding(v);
    IF v.destination IS NOT NULL THEN
        PERFORM vecplug._swap_chunk_reembed(v);
        RETURN;
    END IF;
    IF v.index = 'hnsw' THEN
        PERFORM vecplug._ensure_vector_index(v.source, v.next_attnum, v.storage);
    END IF;
    SELECT ic.relname INTO old_index FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = v.source AND i.indkey[0] = v.embedding_attnum AND am.amname IN ('hnsw', 'ivfflat') LIMIT 1;
    SELECT i.indexrelid::regclass INTO new_index FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = v.source AND i.indkey[0] = v.next_attnum AND am.amname IN ('hnsw', 'ivfflat') LIMIT 1;
    PERFORM vecplug._drop_vectorizer_triggers(v.id, v.source);
    EXECUTE format('ALTER TABLE %s DROP COLUMN %I', v.source, v.embedding_column);
    EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', v.source, v.next_column, v.embedding_column);
    IF old_index IS NOT NULL AND new_index IS NOT NULL THEN
        EXECUTE format('ALTER INDEX %s RENAME TO %I', new_index, old_index);  -- dropped with the old column
    END IF;
    UPDATE vecplug.vectorizers SET embedding_attnum = next_attnum, model = next_model,
        model_fingerprint = next_model_fingerprint, dimensions = next_dimensions,
        next_attnum = NULL, next_model = NULL, next_model_fingerprint = NULL, next_dimensions = NULL
    WHERE id = v.id;
    INSERT INTO vecplug.embedding_columns (table_oid, column_name, model)
    VALUES (v.source, v.embedding_column, jsonb_build_object('name', v.next_model,
            'fingerprint', v.next_model_fingerprint, 'dimensions', v.next_dimensions))
    ON CONFLICT (table_oid, column_name) DO UPDATE SET model = EXCLUDED.model, recorded_at = now();
    -- Every row with text now has the new model's vector of its current text (or is queued by the
    -- caller): what was queued for the old model is done.
    DELETE FROM vecplug.queue WHERE vectorizer_id = v.id;
    DELETE FROM vecplug.queued_statements WHERE vectorizer_id = v.id;
    DELETE FROM vecplug.failed WHERE vectorizer_id = v.id;
    PERFORM vecplug._vectorizer_triggers(v.id);
END
$$;
GRANT EXECUTE ON FUNCTION vecplug._swap_reembed(regclass, name) TO PUBLIC;

-- The swap, in the caller's transaction: refuses while rows with text lack a
-- new vector, unless queue_missing (they are then queued for workers of the
-- new model). Returns how many rows were queued so. It runs as the caller
-- (the table's owner): counting and queueing rows reads the table, which
-- may run the owner's code (row-level security policies, casts).
CREATE OR REPLACE FUNCTION vecplug.finish_reembed(
    source regclass,
    embedding_column name,
    queue_missing boolean DEFAULT false
) RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._lock_vectorizer(source, embedding_column, 'finish a re-embedding');
    missing bigint;
BEGIN
    PERFORM vecplug._require_reembedding(v);
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', v.source);  -- writers wait; readers go on
    IF v.destination IS NOT NULL THEN  -- rows with text and no marker in the shadow table
        EXECUTE format('SELECT count(*) FROM %s t WHERE t.%I IS NOT NULL AND NOT EXISTS (SELECT FROM %s s WHERE %s '
                       'AND s.chunk_index = -1)', v.source, v.text_column, v.next_destination,
                       (SELECT string_agg(format('s.%I = t.%I', k, k), ' AND ') FROM unnest(v.key_columns) AS k))
            INTO missing;
    ELSE
        EXECUTE format('SELECT count(*) FROM %s WHERE %I IS NOT NULL AND %I IS NULL', v.source, v.text_column,
                       v.next_column) INTO missing;
    END IF;
    IF missing > 0 AND NOT coalesce(queue_missing, false) THEN
        RAISE EXCEPTION 'vecplug: % rows of % have no vector in % yet', missing, v.source, quote_ident(v.next_column)
            USING ERRCODE = '55000', HINT = 'Embed them first (vecplug pg reembed does), or pass queue_missing => true.';
    END IF;
    PERFORM vecplug._swap_reembed(v.source, v.embedding_column);
    IF missing > 0 THEN
        PERFORM vecplug._enqueue_rows_without_vector(v.id);
        RAISE NOTICE 'vecplug: % rows of % got no % from the new model; they are queued', missing, v.name,
            CASE WHEN v.destination IS NOT NULL THEN 'chunks' ELSE 'vector' END;
    END IF;
    RETURN missing;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.finish_reembed(regclass, name, boolean) TO PUBLIC;

CREATE OR REPLACE FUNCTION vecplug.cancel_reembed(source regclass, embedding_column name) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._vectorizer_for_update(source, embedding_column, 'cancel a re-embedding');
BEGIN
    IF v.next_column IS NULL THEN
        RETURN;
    END IF;
    PERFORM vecplug._drop_vectorizer_triggers(v.id, v.source);
    IF v.next_destination IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', v.next_destination);
    ELSE
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', v.source, v.next_column);
    END IF;
    UPDATE vecplug.vectorizers SET next_attnum = NULL, next_model = NULL, next_model_fingerprint = NULL,
        next_dimensions = NULL, next_destination = NULL WHERE id = v.id;
    PERFORM vecplug._vectorizer_triggers(v.id);
END
$$;
GRANT EXECUTE ON FUNCTION vecplug.cancel_reembed(regclass, name) TO PUBLIC;
