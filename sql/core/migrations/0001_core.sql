-- vecplug schema version 1: privileges of the schema, the settings table and
-- the record of which model filled which column.
-- Plain SQL: installs on managed PostgreSQL (no superuser, no plpython3u).

-- Everyone may use what vecplug grants; nobody but its owner (the role that
-- installed it) may create objects in it.
REVOKE ALL ON SCHEMA vecplug FROM PUBLIC;
GRANT USAGE ON SCHEMA vecplug TO PUBLIC;
GRANT SELECT ON vecplug.migrations TO PUBLIC;

-- Where the query functions send text, with which key and for how long they
-- wait. Only the owner may read or write it: the functions reach it through
-- SECURITY DEFINER, so a role that may call vecplug.embed_query can neither
-- point it at another server nor read the key. Values are text; the
-- functions check them and name a bad one.
CREATE TABLE vecplug.settings (
    name text PRIMARY KEY,
    value text,
    description text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vecplug.settings FROM PUBLIC;

INSERT INTO vecplug.settings (name, value, description) VALUES
    ('server_url', NULL, 'base URL of `vecplug serve`, e.g. http://127.0.0.1:8000'),
    ('api_key', NULL, 'sent as "Authorization: Bearer <key>" when set'),
    ('connect_timeout', '5', 'seconds to wait for a connection to the server'),
    ('read_timeout', '60', 'seconds to wait for the server''s answer'),
    ('model', NULL, 'the model the server served at install (its served name)'),
    ('model_fingerprint', NULL, 'that model''s fingerprint: the functions refuse a server whose model differs'),
    ('dimensions', NULL, 'that model''s dimensions');

-- Which model filled which vector column: what `vecplug_pgvector.search` and
-- the vectorizers check before they put a query or a row next to the column's
-- vectors (vecplug.check_same_space). `model` is ModelSpec.to_dict() (name,
-- fingerprint, dimensions, prompts ...). Everyone may read it; a row may be
-- written only by a role that owns (or is a member of the owner of) its table.
CREATE TABLE vecplug.embedding_columns (
    table_oid oid NOT NULL,
    column_name name NOT NULL,
    model jsonb NOT NULL,
    recorded_by name NOT NULL DEFAULT current_user,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_oid, column_name)
);
ALTER TABLE vecplug.embedding_columns ENABLE ROW LEVEL SECURITY;
CREATE POLICY anyone_reads ON vecplug.embedding_columns FOR SELECT USING (true);
CREATE POLICY table_owners_write ON vecplug.embedding_columns FOR ALL
    USING (pg_catalog.pg_has_role(current_user,
                                  (SELECT relowner FROM pg_catalog.pg_class WHERE oid = table_oid), 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role(current_user,
                                       (SELECT relowner FROM pg_catalog.pg_class WHERE oid = table_oid), 'USAGE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON vecplug.embedding_columns TO PUBLIC;
