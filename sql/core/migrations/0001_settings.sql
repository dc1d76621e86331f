-- vecplug schema version 1: privileges of the schema and the settings table.
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
