-- vecplug schema version 3: work on a user's table runs with rights its
-- owner has, never with vecplug's (issue 19). The trigger functions now
-- run as the role that writes the table (SECURITY INVOKER), so they queue
-- rows by inserting into vecplug.queue themselves; row-level security
-- decides which rows each role may add or remove, by the table it names.
--
-- `source` is the vectorizer's table. A queue row is honoured only when it
-- matches its vectorizer's table (the worker's claim checks), so a role may
-- queue work only for tables it may write: forging another table's rows
-- would need write access to that table anyway.

ALTER TABLE vecplug.queue ADD COLUMN source oid;
UPDATE vecplug.queue q SET source = v.source FROM vecplug.vectorizers v WHERE v.id = q.vectorizer_id;
DELETE FROM vecplug.queue WHERE source IS NULL;  -- work of vectorizers that no longer exist
ALTER TABLE vecplug.queue ALTER COLUMN source SET NOT NULL;

ALTER TABLE vecplug.failed ADD COLUMN source oid;
UPDATE vecplug.failed f SET source = v.source FROM vecplug.vectorizers v WHERE v.id = f.vectorizer_id;
DELETE FROM vecplug.failed WHERE source IS NULL;
ALTER TABLE vecplug.failed ALTER COLUMN source SET NOT NULL;

-- Writers queue rows of tables they may write (a partition's writer may
-- have rights on that partition only), and deleters forget the queued rows
-- of the rows they delete (skipping those a worker holds). Nobody else sees
-- or changes queue rows directly: the worker goes through vecplug.claim_batch and friends
-- (23_worker_api.sql), which run as vecplug's owner, who bypasses RLS.
ALTER TABLE vecplug.queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY writers_queue ON vecplug.queue FOR INSERT TO PUBLIC
    WITH CHECK (pg_catalog.has_any_column_privilege(source, 'INSERT, UPDATE')
                OR EXISTS (SELECT FROM pg_catalog.pg_partition_tree(source::pg_catalog.regclass) p
                           WHERE pg_catalog.has_any_column_privilege(p.relid, 'INSERT, UPDATE')));
CREATE POLICY deleters_see ON vecplug.queue FOR SELECT TO PUBLIC
    USING (pg_catalog.has_table_privilege(source, 'DELETE') OR pg_catalog.has_table_privilege(source, 'TRUNCATE'));
-- (UPDATE only so that a deleting statement can skip the rows a worker holds: FOR UPDATE SKIP LOCKED)
CREATE POLICY deleters_lock ON vecplug.queue FOR UPDATE TO PUBLIC
    USING (pg_catalog.has_table_privilege(source, 'DELETE') OR pg_catalog.has_table_privilege(source, 'TRUNCATE'))
    WITH CHECK (false);
CREATE POLICY deleters_forget ON vecplug.queue FOR DELETE TO PUBLIC
    USING (pg_catalog.has_table_privilege(source, 'DELETE') OR pg_catalog.has_table_privilege(source, 'TRUNCATE'));
GRANT INSERT (vectorizer_id, source, pk) ON vecplug.queue TO PUBLIC;
GRANT SELECT (id, vectorizer_id, source, pk), UPDATE (retry_after), DELETE ON vecplug.queue TO PUBLIC;

-- Deleting a row forgets its failure; truncating the table forgets them all.
ALTER TABLE vecplug.failed ENABLE ROW LEVEL SECURITY;
CREATE POLICY deleters_see ON vecplug.failed FOR SELECT TO PUBLIC
    USING (pg_catalog.has_table_privilege(source, 'DELETE') OR pg_catalog.has_table_privilege(source, 'TRUNCATE'));
CREATE POLICY deleters_forget ON vecplug.failed FOR DELETE TO PUBLIC
    USING (pg_catalog.has_table_privilege(source, 'DELETE') OR pg_catalog.has_table_privilege(source, 'TRUNCATE'));
GRANT SELECT (vectorizer_id, source, pk), DELETE ON vecplug.failed TO PUBLIC;
