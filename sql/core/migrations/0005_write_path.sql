-- vecplug schema version 5: a writing statement queues its rows in ONE row
-- (issue 21). One queue row per table row cost a COPY into a table with an
-- async vectorizer four times the COPY alone: a heap row, a sequence value
-- and two btree entries (one over a text[] key) per written row. Now the
-- statement-level triggers of a plain table add one row here holding every
-- key the statement queued, and a worker spreads it into vecplug.queue (one
-- row per key, with attempts and backoff) when it claims a batch
-- (vecplug.claim_batch, as vecplug's owner). Partitioned tables keep their
-- row-level triggers and queue into vecplug.queue directly.
--
-- `keys`: a two-dimensional text[], one line per queued row, its primary
-- key columns as text (as vecplug.queue.pk). The same row-level security as
-- vecplug.queue: a role adds rows only for tables it may write, and sees,
-- locks and removes only those of tables it may delete from or truncate.
-- Rows go with their vectorizer (drop_vectorizer, a dropped table).
CREATE TABLE vecplug.queued_statements (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vectorizer_id integer NOT NULL REFERENCES vecplug.vectorizers (id) ON DELETE CASCADE,
    source oid NOT NULL,
    keys text[] NOT NULL CHECK (pg_catalog.array_ndims(keys) = 2),
    queued_at timestamptz NOT NULL DEFAULT now()
);
-- Stored as is, out of line: compressing a statement's keys cost the writer as much again as building them.
ALTER TABLE vecplug.queued_statements ALTER COLUMN keys SET STORAGE EXTERNAL;
CREATE INDEX queued_statements_vectorizer ON vecplug.queued_statements (vectorizer_id, id);
REVOKE ALL ON vecplug.queued_statements FROM PUBLIC;

ALTER TABLE vecplug.queued_statements ENABLE ROW LEVEL SECURITY;
CREATE POLICY writers_queue ON vecplug.queued_statements FOR INSERT TO PUBLIC
    WITH CHECK (pg_catalog.has_any_column_privilege(source, 'INSERT, UPDATE'));
CREATE POLICY deleters_see ON vecplug.queued_statements FOR SELECT TO PUBLIC
    USING (pg_catalog.has_table_privilege(source, 'DELETE') OR pg_catalog.has_table_privilege(source, 'TRUNCATE'));
-- (UPDATE only so that a deleting statement can skip the rows a worker holds: FOR UPDATE SKIP LOCKED)
CREATE POLICY deleters_lock ON vecplug.queued_statements FOR UPDATE TO PUBLIC
    USING (pg_catalog.has_table_privilege(source, 'DELETE') OR pg_catalog.has_table_privilege(source, 'TRUNCATE'))
    WITH CHECK (false);
CREATE POLICY deleters_forget ON vecplug.queued_statements FOR DELETE TO PUBLIC
    USING (pg_catalog.has_table_privilege(source, 'DELETE') OR pg_catalog.has_table_privilege(source, 'TRUNCATE'));
GRANT INSERT (vectorizer_id, source, keys, queued_at) ON vecplug.queued_statements TO PUBLIC;
GRANT SELECT (id, vectorizer_id, source, keys, queued_at), UPDATE (queued_at), DELETE
    ON vecplug.queued_statements TO PUBLIC;
