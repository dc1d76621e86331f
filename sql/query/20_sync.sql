-- The embedding trigger of sync vectorizers (mode => 'sync'): each row is
-- embedded while it is written, inside the statement. Needs plpython3u
-- (for vecplug._embed_remote). Repeatable.
--
-- BEFORE INSERT OR UPDATE OF the text column, per row: the new text goes
-- to the server and the vector is set on the row being written, so no
-- second UPDATE runs (the table's own UPDATE triggers fire only for the
-- writer's own UPDATEs). It runs as the writing role, like the table's own
-- triggers; only the call to the server runs as vecplug's owner
-- (vecplug._embed_for_vectorizer: it reads the server's address and key).
-- One request per row: bulk loads belong in async mode, whose worker
-- batches by the hundred.
--
-- If the server cannot embed a row, on_error decides: 'queue' (default)
-- leaves the vector NULL, the AFTER trigger queues the row for `vecplug pg
-- worker`, one NOTICE says so, and the rest of the statement does not wait
-- on the server again; 'raise' fails the statement.
--
-- The model check: _embed_for_vectorizer hands the vectorizer's model and
-- fingerprint to _embed_remote, so a server that now serves another model
-- is refused (its vectors would not be comparable) instead of written.
-- The database's Python runs no vecplug plugins: vecplug_before_ingest hooks
-- run in async mode (the worker) only.

-- One document text's vector (as pgvector's text), with the vectorizer's model and size, for its
-- sync trigger. What it embeds is counted in vecplug.status; when the server cannot embed it, a
-- vectorizer with on_error 'raise' raises, one with 'queue' returns the error instead (and logs it
-- in vecplug.status: only the server's own words, never a caller's).
CREATE OR REPLACE FUNCTION vecplug._embed_for_vectorizer(vectorizer_id integer, document text,
                                                         OUT vector text, OUT error text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizers;
BEGIN
    SELECT * INTO STRICT v FROM vecplug.vectorizers WHERE id = vectorizer_id;
    BEGIN
        vector := (vecplug._embed_remote(ARRAY[document], 'document', v.model, v.dimensions,
                                         vecplug._server_settings()
                                         || jsonb_build_object('model', v.model, 'model_fingerprint',
                                                               v.model_fingerprint)))[1]::text;
    EXCEPTION WHEN OTHERS THEN
        IF v.on_error = 'raise' THEN
            RAISE;
        END IF;
        error := SQLERRM;
        INSERT INTO vecplug.activity (vectorizer_id, error) VALUES (v.id, left(error, 2000));
        RETURN;
    END;
    IF v.mode = 'sync' THEN  -- what vecplug.status counts as embedded; the log is folded now and then
        INSERT INTO vecplug.activity (vectorizer_id, embedded) VALUES (v.id, 1);
        IF random() < 0.001 THEN
            PERFORM vecplug.fold_activity();
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION vecplug._embed_for_vectorizer(integer, text) IS
    'A document''s vector for a sync vectorizer (what its trigger calls); as vecplug.embed_document, for its model';
GRANT EXECUTE ON FUNCTION vecplug._embed_for_vectorizer(integer, text) TO PUBLIC;

CREATE OR REPLACE FUNCTION vecplug._embed_row() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
    generated boolean;
    new_text text;
    vector_text text;
    failure text;
    this_statement text := statement_timestamp()::text;  -- the marker is transaction-local: this names the statement
BEGIN
    IF vecplug._vectorizer_problem(v) IS NOT NULL THEN
        RETURN NEW;  -- broken: the AFTER trigger warns once per statement
    END IF;
    generated := vecplug._text_is_generated(v);
    new_text := vecplug._row_text(v, TG_RELID, NEW, generated);
    IF TG_OP = 'UPDATE' AND vecplug._row_text(v, TG_RELID, OLD, false) IS NOT DISTINCT FROM new_text THEN
        RETURN NEW;
    END IF;
    IF vecplug._statement_set_vector(v.embedding_column, OLD, NEW) THEN
        RETURN NEW;  -- the statement wrote the vector itself: taken at its word
    END IF;
    IF new_text IS NOT NULL AND current_setting('vecplug.sync_failed_statement', true) IS DISTINCT FROM this_statement THEN
        SELECT e.vector, e.error INTO vector_text, failure FROM vecplug._embed_for_vectorizer(v.id, new_text) AS e;
        IF failure IS NOT NULL THEN  -- on_error 'queue' (with 'raise' the call raised)
            PERFORM set_config('vecplug.sync_failed_statement', this_statement, true);
            RAISE NOTICE 'vecplug: could not embed rows of % now (%); they are queued for `vecplug pg worker`', v.name,
                failure USING HINT = 'Start the embedding server, and a worker, to embed them.';
        END IF;
    END IF;
    NEW := jsonb_populate_record(NEW, jsonb_build_object(v.embedding_column, vector_text));
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION vecplug._embed_row() FROM PUBLIC;  -- only create_vectorizer attaches it

-- Vectorizers made by an older version get this version's triggers. (Before schema version 3 the
-- triggers ran as vecplug's owner, and the sync one wrote vectors back with a second UPDATE.)
DO $$ BEGIN PERFORM vecplug._recreate_all_triggers(NULL); END $$;
DROP FUNCTION IF EXISTS vecplug._embed_changed();
