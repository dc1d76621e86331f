-- vecplug vectorizers, the internals: the description view, the checks, the
-- column, index and trigger builders, and the privileged half of
-- create_vectorizer. What users call (create_vectorizer, drop_vectorizer,
-- retry_failed, the view vecplug.status) is in core/20_vectorizers.sql,
-- created after this file because its functions call these. Plain
-- SQL/plpgsql (installs on managed PostgreSQL). Repeatable: CREATE OR
-- REPLACE and grants only.
--
-- Functions named vecplug._* are no interface: any version may change them.
-- Those revoked from PUBLIC run only inside vecplug's SECURITY DEFINER
-- functions, as vecplug's owner. _create_vectorizer is itself SECURITY
-- DEFINER and callable by all: it checks that the session's role owns the
-- table (or may become its owner) before it changes anything. vecplug's
-- owner must be able to alter the table too: it owns it, is a superuser, or
-- is a member of the table's owner.

-- Each vectorizer with the current names of its table and columns (they are
-- stored by number, so renames are followed; a dropped one is NULL). For a
-- chunked vectorizer (destination set) embedding_column is the destination's
-- vector column, and next_column that of its re-embedding's shadow table (next_destination).
CREATE OR REPLACE VIEW vecplug.vectorizer_columns AS
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       t.attname AS text_column,
       e.attname AS embedding_column,
       x.attname AS next_column,
       ARRAY(SELECT a.attname FROM unnest(v.key_attnums) WITH ORDINALITY AS k (attnum, position)
             JOIN pg_attribute a ON a.attrelid = v.source AND a.attnum = k.attnum
             ORDER BY k.position) AS key_columns,
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod)
             FROM unnest(v.key_attnums) WITH ORDINALITY AS k (attnum, position)
             JOIN pg_attribute a ON a.attrelid = v.source AND a.attnum = k.attnum
             ORDER BY k.position) AS key_types,
       -- a chunked vectorizer is named by its destination's vector column, where its vectors are
       CASE WHEN c.oid IS NULL THEN v.source_name || ' (table dropped)'
            WHEN v.destination IS NOT NULL AND dc.oid IS NULL THEN v.destination_name || ' (chunks table dropped)'
            WHEN e.attname IS NULL THEN quote_ident(coalesce(dn.nspname, n.nspname)) || '.'
                                        || quote_ident(coalesce(dc.relname, c.relname)) || ' (embedding column dropped)'
            ELSE quote_ident(coalesce(dn.nspname, n.nspname)) || '.' || quote_ident(coalesce(dc.relname, c.relname))
                 || '.' || quote_ident(e.attname)
       END AS name,
       c.oid IS NOT NULL AS table_exists,
       v.*  -- last: columns a later migration adds to vecplug.vectorizers append here
FROM vecplug.vectorizers v
LEFT JOIN pg_class c ON c.oid = v.source
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute t ON t.attrelid = v.source AND t.attnum = v.text_attnum AND NOT t.attisdropped
LEFT JOIN pg_class dc ON dc.oid = v.destination
LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace
LEFT JOIN pg_attribute e ON e.attrelid = coalesce(v.destination, v.source) AND e.attnum = v.embedding_attnum
                         AND NOT e.attisdropped
LEFT JOIN pg_attribute x ON x.attrelid = coalesce(v.next_destination, v.source) AND x.attnum = v.next_attnum
                         AND NOT x.attisdropped;
-- Readable by all: the trigger functions run as the writing role and read
-- it. It holds names, modes and models, nothing secret (the API key is in
-- vecplug.settings).
GRANT SELECT ON vecplug.vectorizer_columns TO PUBLIC;

-- What is wrong with a vectorizer, in words, or NULL: a column it needs was dropped.
CREATE OR REPLACE FUNCTION vecplug._vectorizer_problem(v vecplug.vectorizer_columns) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN NOT v.table_exists THEN 'its table was dropped'
                WHEN v.text_column IS NULL THEN 'its text column was dropped'
                WHEN v.destination IS NOT NULL AND NOT EXISTS (SELECT FROM pg_class WHERE oid = v.destination)
                    THEN 'its chunks table was dropped'
                WHEN v.embedding_column IS NULL THEN 'its embedding column was dropped'
                WHEN v.next_attnum IS NOT NULL AND v.next_column IS NULL THEN 'the column of its re-embedding was dropped'
                WHEN EXISTS (SELECT FROM unnest(v.format_attnums) AS f (attnum) WHERE NOT EXISTS
                                 (SELECT FROM pg_attribute a WHERE a.attrelid = v.source AND a.attnum = f.attnum
                                  AND NOT a.attisdropped))
                    THEN 'a column its format names was dropped'
                WHEN EXISTS (SELECT FROM unnest(v.key_columns) WITH ORDINALITY AS k (name, position)
                             WHERE k.name IS NULL) OR cardinality(v.key_columns) < cardinality(v.key_attnums)
                    THEN 'a column of its primary key was dropped'
           END
$$;

-- The current names of the source columns a vectorizer's format names, in the order of format_attnums.
CREATE OR REPLACE FUNCTION vecplug._format_columns(v vecplug.vectorizer_columns) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(a.attname ORDER BY f.position), '{}')
    FROM unnest(v.format_attnums) WITH ORDINALITY AS f (attnum, position)
    JOIN pg_attribute a ON a.attrelid = v.source AND a.attnum = f.attnum AND NOT a.attisdropped
$$;

-- The source columns whose change needs a new embedding: the text column, then the format's columns.
CREATE OR REPLACE FUNCTION vecplug._watched_columns(v vecplug.vectorizer_columns) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[v.text_column] || ARRAY(SELECT c FROM unnest(vecplug._format_columns(v)) AS c
                                         WHERE c <> v.text_column)
$$;

-- `(alias.c1, alias.c2, ...)` over the watched columns, to compare an old and a new row in one expression.
CREATE OR REPLACE FUNCTION vecplug._watched_row(v vecplug.vectorizer_columns, alias text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '(' || string_agg(format('%s.%I', alias, c), ', ' ORDER BY position) || ')'
    FROM unnest(vecplug._watched_columns(v)) WITH ORDINALITY AS w (c, position)
$$;

-- A chunked vectorizer's destination, by current names: its schema, table and key columns (the
-- columns of its primary key before chunk_index, which share the source key's names when created).
CREATE OR REPLACE FUNCTION vecplug._destination(v vecplug.vectorizer_columns,
                                                OUT schema_name name, OUT table_name name, OUT key_columns name[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname, c.relname,
           ARRAY(SELECT a.attname FROM unnest(i.indkey::smallint[]) WITH ORDINALITY AS k (attnum, position)
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                 WHERE k.position <= cardinality(v.key_attnums) ORDER BY k.position)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
    WHERE c.oid = v.destination
$$;

-- The pieces of a format template, in order: literal text (name NULL) and placeholders (name set).
-- The rule Python follows too (vecplug_pgvector.formats): `{name}` is a placeholder, `{{` and `}}`
-- are a literal brace, and any other brace is an error.
CREATE OR REPLACE FUNCTION vecplug._format_pieces(template text, OUT literal text, OUT name text)
RETURNS SETOF record
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rest text := template;
    found text[];
BEGIN
    LOOP
        found := regexp_match(rest, '^([^{}]*)(\{\{|\}\}|\{[^{}]*\})');
        EXIT WHEN found IS NULL;
        literal := found[1] || CASE found[2] WHEN '{{' THEN '{' WHEN '}}' THEN '}' ELSE '' END;
        name := CASE WHEN found[2] NOT IN ('{{', '}}') THEN substr(found[2], 2, length(found[2]) - 2) END;
        RETURN NEXT;
        rest := substr(rest, length(found[1]) + length(found[2]) + 1);
    END LOOP;
    IF strpos(rest, '{') > 0 OR strpos(rest, '}') > 0 THEN
        RAISE EXCEPTION 'vecplug: format % has a lone brace: write {{ or }} for a literal one', quote_literal(template)
            USING ERRCODE = '22023';
    END IF;
    literal := rest;
    name := NULL;
    RETURN NEXT;
END
$$;

-- The columns a format template names, each once, in the order they first appear ({text} and {chunk}
-- left out): the i-th is the source column numbered format_attnums[i].
CREATE OR REPLACE FUNCTION vecplug._format_names(template text) RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(name ORDER BY first_seen), '{}')
    FROM (SELECT p.name, min(p.position) AS first_seen
          FROM vecplug._format_pieces(template) WITH ORDINALITY AS p (literal, name, position)
          WHERE p.name IS NOT NULL AND p.name NOT IN ('text', 'chunk') GROUP BY p.name) named
$$;

-- A format template filled in: {text} / {chunk} with `body`, {column} with values->>column (NULL: '').
CREATE OR REPLACE FUNCTION vecplug._fill_format(template text, body text, values_by_name jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(p.literal || CASE WHEN p.name IS NULL THEN ''
                                        WHEN p.name IN ('text', 'chunk') THEN coalesce(body, '')
                                        ELSE coalesce(values_by_name->>p.name, '') END, '' ORDER BY p.position)
    FROM vecplug._format_pieces(template) WITH ORDINALITY AS p (literal, name, position)
$$;

-- The source columns a format template names, by number, in the order they first appear; raises
-- with a message that says what is wrong. {chunk} is the chunk (chunked vectorizers), {text} the
-- text (the others); the template must hold it.
CREATE OR REPLACE FUNCTION vecplug._format_attnums(source regclass, template text, chunked boolean)
RETURNS smallint[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted text := CASE WHEN chunked THEN 'chunk' ELSE 'text' END;
    other text := CASE WHEN chunked THEN 'text' ELSE 'chunk' END;
    names text[];
    missing text;
    found smallint[];
BEGIN
    IF template IS NULL THEN
        RETURN '{}';
    END IF;
    SELECT array_agg(p.name ORDER BY p.position) INTO names
    FROM vecplug._format_pieces(template) WITH ORDINALITY AS p (literal, name, position) WHERE p.name IS NOT NULL;
    IF other = ANY (coalesce(names, '{}')) THEN
        RAISE EXCEPTION 'vecplug: format % has {%}, which %', quote_literal(template), other,
            CASE WHEN chunked THEN 'is the whole text: a chunked vectorizer embeds each chunk, {chunk}'
                 ELSE 'needs chunking (chunk_tokens => N); without it the text is {text}' END
            USING ERRCODE = '22023';
    END IF;
    IF NOT wanted = ANY (coalesce(names, '{}')) THEN
        RAISE EXCEPTION 'vecplug: format % has no {%}: it must say where the %s go', quote_literal(template), wanted,
            CASE WHEN chunked THEN 'chunk' ELSE 'text' END USING ERRCODE = '22023',
            HINT = format('For example format => %L.', 'title: {title}' || E'\n\n' || '{' || wanted || '}');
    END IF;
    SELECT n INTO missing FROM unnest(names) AS n
    WHERE n NOT IN ('text', 'chunk') AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = source
                                                     AND a.attname = n AND a.attnum > 0 AND NOT a.attisdropped)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: format % names {%}, but table % has no column %', quote_literal(template), missing,
            source, quote_ident(missing) USING ERRCODE = '42703',
            HINT = 'Placeholders are column names, exact (case and spaces count), or {' || wanted || '}.';
    END IF;
    SELECT coalesce(array_agg(a.attnum ORDER BY first_seen), '{}') INTO found
    FROM (SELECT n, min(position) AS first_seen FROM unnest(names) WITH ORDINALITY AS u (n, position)
          WHERE n NOT IN ('text', 'chunk') GROUP BY n) u
    JOIN pg_attribute a ON a.attrelid = source AND a.attname = u.n;
    RETURN found;
END
$$;

-- The fingerprint of a model's vectors cut to `dimensions` (Matryoshka): what
-- vecplug.ModelSpec.truncated(dimensions).fingerprint computes in Python
-- (sha256 of the JSON [[fingerprint], {"dimensions": n}], 24 hex digits).
CREATE OR REPLACE FUNCTION vecplug._truncated_fingerprint(fingerprint text, dimensions integer) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT left(encode(sha256(convert_to(format('[[%s], {"dimensions": %s}]', to_jsonb(fingerprint), dimensions),
                                         'UTF8')), 'hex'), 24)
$$;

-- Raise unless the session's role may act as the owner of `source`, and
-- vecplug's owner (who runs these functions) may alter it.
CREATE OR REPLACE FUNCTION vecplug._check_table_owner(source regclass, action text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_oid oid;
BEGIN
    SELECT relowner INTO owner_oid FROM pg_class WHERE oid = source;
    IF NOT (pg_has_role(session_user, owner_oid, 'MEMBER')
            OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)) THEN
        RAISE EXCEPTION 'vecplug: role % may not % on table %, which belongs to role %',
            session_user, action, source, owner_oid::regrole
            USING ERRCODE = '42501', HINT = 'Run it as the table''s owner.';
    END IF;
    IF NOT pg_has_role(current_user, owner_oid, 'USAGE') THEN
        RAISE EXCEPTION 'vecplug: vecplug''s owner, role %, cannot alter table % (owned by %), so it cannot % there',
            current_user, source, owner_oid::regrole, action
            USING ERRCODE = '42501',
                  HINT = format('As a superuser: GRANT %I TO %I; or install vecplug as the table''s owner.',
                                owner_oid::regrole, current_user);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION vecplug._check_table_owner(regclass, text) FROM PUBLIC;

-- The schema of pgvector's types and operator classes.
CREATE OR REPLACE FUNCTION vecplug._vector_schema() RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found name;
BEGIN
    SELECT n.nspname INTO found FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'vector';
    IF found IS NULL THEN
        RAISE EXCEPTION 'vecplug: pgvector is not enabled in database %', current_database()
            USING ERRCODE = '55000',
                  HINT = 'Run CREATE EXTENSION vector (as a superuser, or from your provider''s console).';
    END IF;
    RETURN found;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug._vector_schema() TO PUBLIC;

-- Forget vectorizers whose table was dropped (their triggers went with it).
CREATE OR REPLACE FUNCTION vecplug._forget_dropped_tables() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM vecplug.vectorizers v WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = v.source)
        RETURNING id
    ), queue AS (
        DELETE FROM vecplug.queue WHERE vectorizer_id IN (SELECT id FROM gone)
    ), failed AS (
        DELETE FROM vecplug.failed WHERE vectorizer_id IN (SELECT id FROM gone)
    )
    DELETE FROM vecplug.activity WHERE vectorizer_id IN (SELECT id FROM gone)
$$;
REVOKE ALL ON FUNCTION vecplug._forget_dropped_tables() FROM PUBLIC;

CREATE OR REPLACE FUNCTION vecplug._drop_vectorizer_triggers(vectorizer_id integer, source regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trigger_name name;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = source) THEN
        RETURN;  -- the table is gone, and its triggers with it
    END IF;
    FOR trigger_name IN SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = source AND t.tgparentid = 0 AND t.tgname IN
            (SELECT format('vecplug_%s_%s', vectorizer_id, suffix)
             FROM unnest(ARRAY['embed', 'stale', 'stale_next', 'insert', 'update', 'delete', 'truncate']) AS suffix) LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, source);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION vecplug._drop_vectorizer_triggers(integer, regclass) FROM PUBLIC;

-- The triggers of a chunked vectorizer (its source table gets no vector column, so nothing is
-- cleared or set on the row itself):
--   vecplug_<id>_insert    AFTER INSERT: the new rows with text (async: queued; sync: chunked now
--                          and their chunks written into the destination, as the writer; queued
--                          when the server cannot: query/15_sync_chunks.sql)
--   vecplug_<id>_update    AFTER UPDATE: the rows whose text, format columns or key changed (a text
--                          set to NULL too: its chunks go), as for INSERT
--   vecplug_<id>_delete    AFTER DELETE: forgets their queued and failed work (the foreign key
--                          deletes their chunks)
--   vecplug_<id>_truncate  AFTER TRUNCATE: forgets all queued and failed work
-- Per statement on a plain table, per row on a partitioned one (as _vectorizer_triggers).
CREATE OR REPLACE FUNCTION vecplug._chunk_vectorizer_triggers(v vecplug.vectorizer_columns) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    partitioned boolean := (SELECT relkind = 'p' FROM pg_class WHERE oid = v.source);
    changed text;
    writer text := CASE v.mode WHEN 'sync' THEN 'vecplug._sync_chunks' ELSE 'vecplug._queue_changed' END;
BEGIN
    IF partitioned THEN
        changed := format('%s IS DISTINCT FROM %s', vecplug._watched_row(v, 'OLD'), vecplug._watched_row(v, 'NEW'))
                   || (SELECT string_agg(format(' OR OLD.%1$I IS DISTINCT FROM NEW.%1$I', k), '')
                       FROM unnest(v.key_columns) AS k);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW WHEN (NEW.%I IS NOT NULL) '
                       'EXECUTE FUNCTION %s(%L)',
                       format('vecplug_%s_insert', v.id), v.source, v.text_column, writer, v.id);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) '
                       'EXECUTE FUNCTION %s(%L)',
                       format('vecplug_%s_update', v.id), v.source, changed, writer, v.id);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION vecplug._forget_deleted(%L)',
                       format('vecplug_%s_delete', v.id), v.source, v.id);
    ELSE
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS vecplug_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %s(%L)',
                       format('vecplug_%s_insert', v.id), v.source, writer, v.id);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS vecplug_old NEW TABLE AS vecplug_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %s(%L)',
                       format('vecplug_%s_update', v.id), v.source, writer, v.id);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS vecplug_old '
                       'FOR EACH STATEMENT EXECUTE FUNCTION vecplug._forget_deleted(%L)',
                       format('vecplug_%s_delete', v.id), v.source, v.id);
    END IF;
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION vecplug._forget_all(%L)',
                   format('vecplug_%s_truncate', v.id), v.source, v.id);
END
$$;
REVOKE ALL ON FUNCTION vecplug._chunk_vectorizer_triggers(vecplug.vectorizer_columns) FROM PUBLIC;

-- (Re)create the triggers of a vectorizer, for its mode, its table and its columns now:
--   vecplug_<id>_embed       sync mode, BEFORE INSERT OR UPDATE, per row: embeds the new text into the
--                            row being written (no second UPDATE, so no user UPDATE trigger fires)
--   vecplug_<id>_stale       async mode, BEFORE UPDATE OF text, per changed row: clears the vector
--                            (unless the statement sets one itself), so a stale vector never answers
--   vecplug_<id>_stale_next  the same for the shadow column of a re-embedding in progress
--   vecplug_<id>_insert      AFTER INSERT: queues the new rows that have no vector (async: all of them;
--                            sync: those the server could not embed)
--   vecplug_<id>_update      AFTER UPDATE: the same for rows whose text (or key) changed
--   vecplug_<id>_delete      AFTER DELETE: forgets their failures
--   vecplug_<id>_truncate    AFTER TRUNCATE: forgets all queued and failed work
-- On a plain table the AFTER triggers are per statement (transition tables, one queue INSERT per
-- statement); on a partitioned table they are per row, which PostgreSQL clones to every partition,
-- present and future, so writes that name a partition are queued too. A generated text column has
-- no new value in BEFORE triggers: those triggers then fire on every UPDATE and compute it.
CREATE OR REPLACE FUNCTION vecplug._vectorizer_triggers(vectorizer_id integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizer_columns;
    partitioned boolean;
    generated boolean;
    vector_equal text;
    key_changed text;
    stale record;
    watched_list text;   -- the text column and the format's columns: a change of any needs a new vector
    watched_changed text;
BEGIN
    SELECT * INTO STRICT v FROM vecplug.vectorizer_columns WHERE id = vectorizer_id;
    PERFORM vecplug._drop_vectorizer_triggers(v.id, v.source);
    IF v.destination IS NOT NULL THEN
        PERFORM vecplug._chunk_vectorizer_triggers(v);
        RETURN;
    END IF;
    watched_list := (SELECT string_agg(quote_ident(c), ', ') FROM unnest(vecplug._watched_columns(v)) AS c);
    watched_changed := format('%s IS DISTINCT FROM %s', vecplug._watched_row(v, 'OLD'), vecplug._watched_row(v, 'NEW'));
    partitioned := (SELECT relkind = 'p' FROM pg_class WHERE oid = v.source);
    generated := vecplug._text_is_generated(v);
    -- pgvector's = spelt with its schema (the search_path here is pg_catalog only)
    vector_equal := format('OPERATOR(%I.=)', vecplug._vector_schema());

    IF v.mode = 'sync' THEN
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE%s ON %s FOR EACH ROW '
                       'EXECUTE FUNCTION vecplug._embed_row(%L)',
                       format('vecplug_%s_embed', v.id),
                       CASE WHEN generated THEN '' ELSE format(' OF %s', watched_list) END, v.source, v.id);
    END IF;
    -- The stale triggers: the vector (async; sync's embed trigger does it) and a re-embedding's shadow column.
    FOR stale IN SELECT * FROM (VALUES ('current', 'stale', v.mode = 'async'),
                                       ('next', 'stale_next', v.next_column IS NOT NULL)) AS s (which, suffix, wanted)
                 WHERE s.wanted LOOP
        IF generated THEN  -- no WHEN can see the new text: the function compares
            EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %s FOR EACH ROW '
                           'EXECUTE FUNCTION vecplug._clear_vector(%L, %L, %L)',
                           format('vecplug_%s_%s', v.id, stale.suffix), v.source, v.id, stale.which, 'generated');
        ELSE  -- a changed text; for the vector, also a statement that did not set one itself
            EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OF %s ON %s FOR EACH ROW WHEN (%s%s) '
                           'EXECUTE FUNCTION vecplug._clear_vector(%L, %L)',
                           format('vecplug_%s_%s', v.id, stale.suffix), watched_list, v.source, watched_changed,
                           CASE stale.which WHEN 'current' THEN
                               format(' AND coalesce(OLD.%1$I %2$s NEW.%1$I, OLD.%1$I IS NULL AND NEW.%1$I IS NULL)',
                                      v.embedding_column, vector_equal) ELSE '' END,
                           v.id, stale.which);
        END IF;
    END LOOP;

    IF partitioned THEN
        key_changed := (SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', k), ' OR ')
                        FROM unnest(v.key_columns) AS k);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW '
                       'WHEN (NEW.%I IS NOT NULL AND NEW.%I IS NULL) EXECUTE FUNCTION vecplug._queue_changed(%L)',
                       format('vecplug_%s_insert', v.id), v.source, v.text_column, v.embedding_column, v.id);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW '
                       'WHEN (NEW.%I IS NOT NULL AND NEW.%I IS NULL AND (%s OR %s)) '
                       'EXECUTE FUNCTION vecplug._queue_changed(%L)',
                       format('vecplug_%s_update', v.id), v.source, v.text_column, v.embedding_column,
                       watched_changed, key_changed, v.id);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION vecplug._forget_deleted(%L)',
                       format('vecplug_%s_delete', v.id), v.source, v.id);
    ELSE
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS vecplug_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION vecplug._queue_changed(%L)',
                       format('vecplug_%s_insert', v.id), v.source, v.id);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS vecplug_old NEW TABLE AS vecplug_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION vecplug._queue_changed(%L)',
                       format('vecplug_%s_update', v.id), v.source, v.id);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS vecplug_old '
                       'FOR EACH STATEMENT EXECUTE FUNCTION vecplug._forget_deleted(%L)',
                       format('vecplug_%s_delete', v.id), v.source, v.id);
    END IF;
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION vecplug._forget_all(%L)',
                   format('vecplug_%s_truncate', v.id), v.source, v.id);
END
$$;
REVOKE ALL ON FUNCTION vecplug._vectorizer_triggers(integer) FROM PUBLIC;

-- Add the vector column (or check the one there), sized and typed for the model.
CREATE OR REPLACE FUNCTION vecplug._ensure_vector_column(source regclass, column_name name, storage text,
                                                          dimensions integer) RETURNS smallint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    vector_schema name := vecplug._vector_schema();
    found record;
BEGIN
    SELECT a.attnum, a.atttypmod, t.typname, tn.nspname, format_type(a.atttypid, a.atttypmod) AS shown INTO found
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
    WHERE a.attrelid = source AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF found.attnum IS NULL THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %I.%I(%s)', source, column_name, vector_schema, storage, dimensions);
        RETURN (SELECT attnum FROM pg_attribute WHERE attrelid = source AND attname = column_name);
    END IF;
    IF found.typname <> storage OR found.nspname <> vector_schema OR found.atttypmod <> dimensions THEN
        RAISE EXCEPTION 'vecplug: column % of table % is %, which cannot hold this model''s vectors (%(%))',
            quote_ident(column_name), source, found.shown, storage, dimensions
            USING ERRCODE = '42804',
                  HINT = format('Name a new column with embedding_column => ''...'' (vecplug adds it), or '
                                'ALTER TABLE %s ALTER COLUMN %I TYPE %I.%I(%s).',
                                source, column_name, vector_schema, storage, dimensions);
    END IF;
    RETURN found.attnum;
END
$$;
REVOKE ALL ON FUNCTION vecplug._ensure_vector_column(regclass, name, text, integer) FROM PUBLIC;

-- An HNSW cosine index on the column, unless it has an HNSW or IVFFlat index already.
CREATE OR REPLACE FUNCTION vecplug._ensure_vector_index(source regclass, attnum smallint, storage text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                   WHERE i.indrelid = source AND i.indkey[0] = attnum AND am.amname IN ('hnsw', 'ivfflat')) THEN
        EXECUTE format('CREATE INDEX ON %s USING hnsw (%I %I.%I)', source,
                       (SELECT attname FROM pg_attribute a WHERE a.attrelid = source AND a.attnum = $2),
                       vecplug._vector_schema(), storage || '_cosine_ops');
    END IF;
END
$$;
REVOKE ALL ON FUNCTION vecplug._ensure_vector_index(regclass, smallint, text) FROM PUBLIC;

-- Raise unless the chunking arguments make sense together (before any work).
CREATE OR REPLACE FUNCTION vecplug._check_chunking(chunk_tokens integer, chunk_overlap integer, late_chunking boolean,
                                                   format text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF chunk_overlap IS NULL OR late_chunking IS NULL THEN
        RAISE EXCEPTION 'vecplug: chunk_overlap and late_chunking must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF chunk_tokens IS NULL THEN
        IF chunk_overlap <> 0 OR late_chunking THEN
            RAISE EXCEPTION 'vecplug: chunk_overlap and late_chunking need chunk_tokens => N (the chunk size in tokens)'
                USING ERRCODE = '22023';
        END IF;
        RETURN;
    END IF;
    IF chunk_tokens < 1 THEN
        RAISE EXCEPTION 'vecplug: chunk_tokens must be at least 1, not %; 512 suits most retrieval', chunk_tokens
            USING ERRCODE = '22023';
    END IF;
    IF chunk_overlap < 0 OR chunk_overlap >= chunk_tokens THEN
        RAISE EXCEPTION 'vecplug: chunk_overlap must be at least 0 and less than chunk_tokens (%), not %', chunk_tokens,
            chunk_overlap USING ERRCODE = '22023';
    END IF;
    IF late_chunking AND format IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: late_chunking takes no format: late chunking pools each chunk from one pass over '
            'the whole bare text, so a template around each chunk cannot enter its vector' USING ERRCODE = '22023',
            HINT = 'Drop format => ..., or late_chunking => true.';
    END IF;
END
$$;

-- Raise unless `destination` can hold a vectorizer's chunks of `source`: a plain table owned by the
-- source's owner, the source key's columns (same names and types) then chunk_index, chunk_start,
-- chunk_end (integer) and chunk (text), primary key (key..., chunk_index), and a foreign key to the
-- source that deletes chunks with their row. (The vector column is checked by _ensure_vector_column.)
CREATE OR REPLACE FUNCTION vecplug._check_destination(source regclass, destination regclass, key_attnums smallint[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted record;
    problem text;
    expected_key text[];
BEGIN
    SELECT CASE WHEN d.relkind <> 'r' THEN 'it is not a plain table'
                WHEN d.relowner <> s.relowner THEN format('it belongs to role %s, not to %s (the owner of %s)',
                                                          d.relowner::regrole, s.relowner::regrole, source)
           END INTO problem
    FROM pg_class d, pg_class s WHERE d.oid = destination AND s.oid = source;
    IF problem IS NULL THEN
        FOR wanted IN
            SELECT a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS type_name
            FROM unnest(key_attnums) WITH ORDINALITY AS k (attnum, position)
            JOIN pg_attribute a ON a.attrelid = source AND a.attnum = k.attnum
            UNION ALL VALUES ('chunk_index'::name, 'integer'), ('chunk_start', 'integer'), ('chunk_end', 'integer'),
                             ('chunk', 'text') LOOP
            IF NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = destination AND a.attname = wanted.column_name
                           AND NOT a.attisdropped AND format_type(a.atttypid, a.atttypmod) = wanted.type_name) THEN
                problem := format('it has no column %I of type %s', wanted.column_name, wanted.type_name);
                EXIT;
            END IF;
        END LOOP;
    END IF;
    expected_key := ARRAY(SELECT a.attname::text FROM unnest(key_attnums) WITH ORDINALITY AS k (attnum, position)
                          JOIN pg_attribute a ON a.attrelid = source AND a.attnum = k.attnum ORDER BY k.position)
                    || ARRAY['chunk_index'];
    IF problem IS NULL AND expected_key IS DISTINCT FROM ARRAY(
            SELECT a.attname::text FROM pg_index i, unnest(i.indkey::smallint[]) WITH ORDINALITY AS k (attnum, position)
            JOIN pg_attribute a ON a.attrelid = destination AND a.attnum = k.attnum
            WHERE i.indrelid = destination AND i.indisprimary ORDER BY k.position) THEN
        problem := format('its primary key is not (%s)', array_to_string(expected_key, ', '));
    END IF;
    IF problem IS NULL AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = destination AND c.contype = 'f'
                                       AND c.confrelid = source AND c.confdeltype = 'c') THEN
        problem := format('it has no foreign key to %s with ON DELETE CASCADE', source);
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: table % cannot hold the chunks of %: %', destination, source, problem
            USING ERRCODE = '42P16',
                  HINT = 'Name a table that does not exist yet with destination => ''schema.name'' (vecplug makes it).';
    END IF;
END
$$;

-- Schema version 4 added the chunking arguments: the old signature goes (two would make every call ambiguous).
DROP FUNCTION IF EXISTS vecplug._create_vectorizer(regclass, name, name, text, integer, text, text, boolean, text, text);

-- The privileged half of create_vectorizer: checks, the vector column, its
-- index, the triggers and vecplug's own rows, as vecplug's owner. For a
-- chunked vectorizer the destination table exists already (the caller's
-- half made it, as the table's owner): the vector column and its index go
-- there, and the source table gets none. It reads
-- no row of the table and evaluates nothing of its owner's (the index build
-- runs as the table's owner: PostgreSQL does that for every CREATE INDEX).
CREATE OR REPLACE FUNCTION vecplug._create_vectorizer(
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
    destination regclass DEFAULT NULL,
    format text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    relation record;
    text_type record;
    key_attnums smallint[];
    settings jsonb := vecplug._server_settings();
    model_name text := model;
    fingerprint text;
    model_dimensions integer;
    matryoshka integer[];
    embedding_attnum smallint;
    existing integer;
    recorded jsonb;
    new_id integer;
    max_index_dimensions integer;
    chunked boolean := chunk_tokens IS NOT NULL;
    vectors_in regclass := coalesce(destination, source);  -- the table that holds the vectors
    format_attnums smallint[];
BEGIN
    IF source IS NULL OR text_column IS NULL OR embedding_column IS NULL THEN
        RAISE EXCEPTION 'vecplug: source, text_column and embedding_column must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF mode IS NULL OR mode NOT IN ('async', 'sync') THEN
        RAISE EXCEPTION 'vecplug: mode must be ''async'' or ''sync'', not %', quote_nullable(mode) USING ERRCODE = '22023',
            HINT = 'async: triggers queue rows for `vecplug pg worker`; sync: rows are embedded in the statement (needs plpython3u).';
    END IF;
    IF storage IS NULL OR storage NOT IN ('vector', 'halfvec') THEN
        RAISE EXCEPTION 'vecplug: storage must be ''vector'' or ''halfvec'', not %', quote_nullable(storage)
            USING ERRCODE = '22023';
    END IF;
    IF index IS NULL OR index NOT IN ('hnsw', 'none') THEN
        RAISE EXCEPTION 'vecplug: index must be ''hnsw'' or ''none'', not %', quote_nullable(index) USING ERRCODE = '22023';
    END IF;
    IF on_error IS NULL OR on_error NOT IN ('queue', 'raise') THEN
        RAISE EXCEPTION 'vecplug: on_error must be ''queue'' or ''raise'', not %', quote_nullable(on_error)
            USING ERRCODE = '22023';
    END IF;
    IF enqueue_existing IS NULL THEN
        RAISE EXCEPTION 'vecplug: enqueue_existing must be true or false' USING ERRCODE = '22004';
    END IF;
    PERFORM vecplug._check_chunking(chunk_tokens, chunk_overlap, late_chunking, format);
    IF chunked AND destination IS NULL THEN
        RAISE EXCEPTION 'vecplug: a chunked vectorizer needs its destination table (vecplug.create_vectorizer makes it)'
            USING ERRCODE = '22004';
    ELSIF NOT chunked AND destination IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: destination => ... is for chunked vectorizers: pass chunk_tokens => N too'
            USING ERRCODE = '22023';
    END IF;

    SELECT c.relkind, c.relowner, n.nspname, c.relname INTO relation
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF relation.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'vecplug: % is not a table (a vectorizer needs a table or a partitioned table)', source
            USING ERRCODE = '42809';
    END IF;
    PERFORM vecplug._check_table_owner(source, 'create a vectorizer');
    PERFORM vecplug._forget_dropped_tables();
    format_attnums := vecplug._format_attnums(source, format, chunked);

    SELECT a.attnum, coalesce(bt.typcategory, t.typcategory) AS category, format_type(a.atttypid, a.atttypmod) AS shown
    INTO text_type
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
    WHERE a.attrelid = source AND a.attname = text_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF text_type.attnum IS NULL THEN
        RAISE EXCEPTION 'vecplug: table % has no column %', source, quote_ident(text_column) USING ERRCODE = '42703',
            HINT = 'Names are exact: case and spaces count.';
    ELSIF text_type.category <> 'S' THEN
        RAISE EXCEPTION 'vecplug: column % of table % is %, not text', quote_ident(text_column), source, text_type.shown
            USING ERRCODE = '42804', HINT = 'Embed a text, varchar or char column (a generated text column can combine others).';
    END IF;

    SELECT i.indkey::smallint[] INTO key_attnums FROM pg_index i WHERE i.indrelid = source AND i.indisprimary;
    IF key_attnums IS NULL THEN
        RAISE EXCEPTION 'vecplug: table % has no primary key', source USING ERRCODE = '42P16',
            HINT = 'A vectorizer finds rows again by their primary key: ALTER TABLE ... ADD PRIMARY KEY (...), '
                   'or add an identity column (ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY).';
    END IF;

    -- The model, its fingerprint and size: the one recorded at install (vecplug pg install --server-url),
    -- unless another is named; then the first worker that embeds records its fingerprint.
    IF model_name IS NULL OR model_name = settings->>'model' THEN
        model_name := settings->>'model';
        fingerprint := settings->>'model_fingerprint';
        model_dimensions := (settings->>'dimensions')::integer;
        matryoshka := string_to_array(nullif(settings->>'matryoshka_dims', ''), ',')::integer[];
    END IF;
    IF dimensions IS NULL THEN
        IF model_dimensions IS NULL THEN
            RAISE EXCEPTION 'vecplug: the size of the vectors is not known: pass dimensions => N'
                USING ERRCODE = '22023',
                      HINT = 'Or record the server''s model first: vecplug pg install --dsn ... --server-url URL.';
        END IF;
        dimensions := model_dimensions;
    ELSIF dimensions < 1 THEN
        RAISE EXCEPTION 'vecplug: dimensions must be a positive number, not %', dimensions USING ERRCODE = '22023';
    ELSIF model_dimensions IS NOT NULL AND dimensions <> model_dimensions
          AND NOT (dimensions < model_dimensions AND (matryoshka IS NULL OR dimensions = ANY (matryoshka))) THEN
        IF matryoshka = ARRAY[model_dimensions] THEN
            RAISE EXCEPTION 'vecplug: model % gives % dimensions and was not trained to have them cut (no Matryoshka '
                'sizes); not %', model_name, model_dimensions, dimensions USING ERRCODE = '22023',
                HINT = 'Leave dimensions out, or serve a Matryoshka model such as nomic-ai/modernbert-embed-base.';
        END IF;
        RAISE EXCEPTION 'vecplug: model % gives % dimensions, or cuts to %; not %', model_name, model_dimensions,
            coalesce(array_to_string(matryoshka, ', '), 'fewer'), dimensions USING ERRCODE = '22023';
    END IF;
    max_index_dimensions := CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END;
    IF index = 'hnsw' AND dimensions > max_index_dimensions THEN
        RAISE EXCEPTION 'vecplug: pgvector''s HNSW index takes at most % dimensions of %, not %', max_index_dimensions,
            storage, dimensions USING ERRCODE = '22023',
            HINT = 'Use storage => ''halfvec'' (up to 4,000), fewer Matryoshka dimensions, or index => ''none''.';
    END IF;
    IF mode = 'sync' THEN
        IF to_regprocedure('vecplug._embed_row()') IS NULL OR to_regprocedure('vecplug._sync_chunks()') IS NULL THEN
            RAISE EXCEPTION 'vecplug: sync mode needs vecplug''s query functions (plpython3u), which are not installed here'
                USING ERRCODE = '0A000',
                      HINT = 'Use mode => ''async'' and run vecplug pg worker, or install vecplug as a superuser where '
                             'plpython3u is available.';
        END IF;
        IF fingerprint IS NULL THEN
            RAISE EXCEPTION 'vecplug: sync mode needs the server''s model recorded at install' USING ERRCODE = '55000',
                HINT = 'Run vecplug pg install --dsn ... --server-url URL while the server runs (its model is recorded), '
                       'and leave model => NULL.';
        END IF;
    END IF;

    IF chunked THEN
        SELECT v.id INTO existing FROM vecplug.vectorizers v WHERE v.destination = $14;
        IF existing IS NOT NULL THEN
            RAISE EXCEPTION 'vecplug: table % already holds the chunks of vectorizer %', destination, existing
                USING ERRCODE = '42710',
                      HINT = format('Drop it first (SELECT vecplug.drop_vectorizer(%s);), or name another table '
                                    'with destination => ''...''.', existing);
        END IF;
        PERFORM vecplug._check_destination(source, destination, key_attnums);
    END IF;
    SELECT v.id INTO existing FROM vecplug.vectorizers v JOIN pg_attribute a
        ON a.attrelid = v.source AND a.attnum = v.embedding_attnum
    WHERE v.source = $1 AND v.destination IS NULL AND a.attname = embedding_column AND NOT chunked;
    IF existing IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: table % already has a vectorizer into column % (id %)', source,
            quote_ident(embedding_column), existing USING ERRCODE = '42710',
            HINT = format('Drop it first: SELECT vecplug.drop_vectorizer(%L, %L);', source, embedding_column);
    END IF;
    IF NOT chunked AND (embedding_column = text_column OR embedding_column IN
            (SELECT attname FROM pg_attribute WHERE attrelid = source AND attnum = ANY (key_attnums))) THEN
        RAISE EXCEPTION 'vecplug: the embedding column % is the text column or part of the primary key',
            quote_ident(embedding_column) USING ERRCODE = '22023';
    END IF;

    IF fingerprint IS NOT NULL AND dimensions <> model_dimensions THEN
        fingerprint := vecplug._truncated_fingerprint(fingerprint, dimensions);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = vectors_in AND a.attname = embedding_column
                   AND a.attnum > 0 AND NOT a.attisdropped) THEN
        DELETE FROM vecplug.embedding_columns c WHERE c.table_oid = vectors_in AND c.column_name = embedding_column;
    END IF;
    embedding_attnum := vecplug._ensure_vector_column(vectors_in, embedding_column, storage, dimensions);
    -- The column's recorded model (vecplug_pgvector.record_model, or an earlier vectorizer) must be this one.
    SELECT c.model INTO recorded FROM vecplug.embedding_columns c
    WHERE c.table_oid = vectors_in AND c.column_name = embedding_column;
    IF recorded IS NOT NULL AND (fingerprint IS NULL OR recorded->>'fingerprint' = fingerprint)
       AND (recorded->>'dimensions')::integer = dimensions THEN
        model_name := coalesce(model_name, recorded->>'name');
        fingerprint := recorded->>'fingerprint';
    ELSIF recorded IS NOT NULL THEN
        RAISE EXCEPTION 'vecplug: column % of table % holds vectors of model % (% dimensions, fingerprint %), not of %',
            quote_ident(embedding_column), vectors_in, recorded->>'name', recorded->>'dimensions',
            recorded->>'fingerprint', coalesce(model_name, 'the model given') USING ERRCODE = '22023',
            DETAIL = format('This vectorizer''s vectors: %s dimensions, fingerprint %s.', dimensions, fingerprint),
            HINT = 'Embed into another column (embedding_column => ''...''), or re-embed the column with the new '
                   'model (vecplug pg reembed).';
    ELSIF fingerprint IS NOT NULL THEN
        INSERT INTO vecplug.embedding_columns (table_oid, column_name, model)
        VALUES (vectors_in, embedding_column,
                jsonb_build_object('name', model_name, 'fingerprint', fingerprint, 'dimensions', dimensions));
    END IF;
    INSERT INTO vecplug.vectorizers (source, text_attnum, embedding_attnum, key_attnums, mode, dimensions, storage,
                                     index, on_error, model, model_fingerprint, source_name, destination,
                                     destination_name, chunk_tokens, chunk_overlap, late_chunking, format,
                                     format_attnums)
    VALUES (source, text_type.attnum, embedding_attnum, key_attnums, mode, dimensions, storage, index, on_error,
            model_name, fingerprint, quote_ident(relation.nspname) || '.' || quote_ident(relation.relname),
            destination, CASE WHEN chunked THEN destination::text END, chunk_tokens, chunk_overlap, late_chunking,
            format, format_attnums)
    RETURNING id INTO new_id;
    IF index = 'hnsw' THEN
        PERFORM vecplug._ensure_vector_index(vectors_in, embedding_attnum, storage);
    END IF;
    PERFORM vecplug._vectorizer_triggers(new_id);
    RETURN new_id;
END
$$;
GRANT EXECUTE ON FUNCTION vecplug._create_vectorizer(regclass, name, name, text, integer, text, text, boolean, text, text,
                                                     integer, integer, boolean, regclass, text) TO PUBLIC;

-- The vectorizer of a table's embedding column, locked FOR UPDATE, after the owner check.
-- `source` may also be a vectorizer's id (drop_vectorizer(6): PostgreSQL reads the number as a
-- regclass), which is how a vectorizer whose table was dropped is named. A table with one
-- vectorizer whose embedding column was dropped, or embedding_column NULL, finds the table's only one.
CREATE OR REPLACE FUNCTION vecplug._vectorizer_for_update(source regclass, embedding_column name, action text)
RETURNS vecplug.vectorizer_columns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found vecplug.vectorizer_columns;
    candidates integer[];
BEGIN
    IF source IS NULL THEN
        RAISE EXCEPTION 'vecplug: source must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = source) THEN
        -- a vectorizer id, or the oid of a dropped table
        SELECT array_agg(v.id ORDER BY v.id) INTO candidates FROM vecplug.vectorizers v
        WHERE v.id::bigint = $1::oid::bigint
           OR (v.source = $1 AND NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = v.source));
        IF cardinality(candidates) IS DISTINCT FROM 1 THEN
            RAISE EXCEPTION 'vecplug: no table or vectorizer %', source::oid USING ERRCODE = '42704',
                HINT = 'SELECT id, vectorizer FROM vecplug.status lists the vectorizers and their ids.';
        END IF;
        SELECT * INTO found FROM vecplug.vectorizer_columns c WHERE c.id = candidates[1];
        IF found.table_exists THEN
            PERFORM vecplug._check_table_owner(found.source, action);
        ELSIF NOT (pg_has_role(session_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'vecplug'), 'MEMBER')
                   OR found.created_by = session_user::text) THEN
            RAISE EXCEPTION 'vecplug: role % may not % %: its table is gone, and only its creator (%) or vecplug''s owner may',
                session_user, action, found.name, found.created_by USING ERRCODE = '42501';
        END IF;
    ELSE
        PERFORM vecplug._check_table_owner(source, action);
        SELECT array_agg(c.id ORDER BY c.id) INTO candidates FROM vecplug.vectorizer_columns c
        WHERE c.source = $1 AND c.embedding_column = $2;
        IF candidates IS NULL THEN
            SELECT array_agg(c.id ORDER BY c.id) INTO candidates FROM vecplug.vectorizer_columns c
            WHERE c.source = $1 AND ($2 IS NULL OR c.embedding_column IS NULL);
        END IF;
        IF cardinality(candidates) IS DISTINCT FROM 1 THEN
            RAISE EXCEPTION 'vecplug: table % has no vectorizer into column %', source,
                coalesce(quote_ident(embedding_column), '(any)') USING ERRCODE = '42704',
                HINT = CASE WHEN cardinality(candidates) > 1 THEN 'It has several: name the embedding column, or the id.'
                            ELSE 'SELECT id, vectorizer FROM vecplug.status lists the vectorizers.' END;
        END IF;
    END IF;
    PERFORM 1 FROM vecplug.vectorizers v WHERE v.id = candidates[1] FOR UPDATE;  -- waits for workers' batches
    SELECT * INTO found FROM vecplug.vectorizer_columns c WHERE c.id = candidates[1];
    RETURN found;
END
$$;
REVOKE ALL ON FUNCTION vecplug._vectorizer_for_update(regclass, name, text) FROM PUBLIC;

-- The keys of a row of vecplug.queued_statements (migration 0005): one text[] per line of its
-- two-dimensional `keys`, in order, as vecplug.queue.pk holds them.
CREATE OR REPLACE FUNCTION vecplug._statement_keys(keys text[]) RETURNS TABLE (line bigint, pk text[])
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- (the array is read once: naming `keys` per element would read all of it again each time)
    WITH shape AS (SELECT array_length(keys, 2) AS width),
         elements AS (SELECT * FROM unnest(keys) WITH ORDINALITY AS u (element, position))
    SELECT e.position, ARRAY[e.element] FROM elements e, shape WHERE shape.width = 1
    UNION ALL
    SELECT (e.position - 1) / shape.width + 1, array_agg(e.element ORDER BY e.position)
    FROM elements e, shape WHERE shape.width > 1 GROUP BY 1
    ORDER BY 1
$$;
GRANT EXECUTE ON FUNCTION vecplug._statement_keys(text[]) TO PUBLIC;
