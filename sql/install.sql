-- vecplug: install or upgrade schema vecplug with psql alone, no Python.
-- The same files, in the same order, as `vecplug pg install` applies:
--
--   psql -d DATABASE -v server_url=http://127.0.0.1:8080 -f install.sql
--
-- The server's API key (if it has one) never goes on the command line: any
-- user of the machine sees a process's arguments (`ps`). Let psql read it
-- from a file (only the path shows):
--
--   psql -d DATABASE -v server_url=http://127.0.0.1:8080 -c '\set api_key `cat KEYFILE`' -f install.sql
--
-- or, in an interactive psql: \set api_key `cat KEYFILE` then \i install.sql.
-- `vecplug pg install` reads it from $VECPLUG_API_KEY or --api-key-file.
--
-- (`vecplug pg sql-dir` prints this folder when vecplug is pip-installed.)
-- One transaction. The core (settings, version) always installs; the query
-- functions only where pgvector is enabled, plpython3u is available and you
-- are a superuser. Unlike `vecplug pg install`, this does not ask the server
-- which model it serves; the functions then skip the model-swap guard until
-- `vecplug pg install --server-url ...` records it (or you fill the rows
-- model, model_fingerprint and dimensions of vecplug.settings).
--
-- A new migration or repeatable file gets its lines here too
-- (tests/postgres/test_pg_install.py checks that this file names every one, in order).
\set ON_ERROR_STOP on
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('vecplug install'));
SET LOCAL search_path = pg_catalog, pg_temp;

\ir core/bootstrap.sql

SELECT NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector')
   AND EXISTS (SELECT FROM pg_available_extensions WHERE name = 'vector')
   AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS vecplug_create_vector \gset
\if :vecplug_create_vector
CREATE EXTENSION vector SCHEMA public;
\endif

-- Migrations: once each, in number order.
SELECT NOT EXISTS (SELECT FROM vecplug.migrations WHERE name = '0001_core') AS vecplug_apply \gset
\if :vecplug_apply
\ir core/migrations/0001_core.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('0001_core', 'migration');
\endif
SELECT NOT EXISTS (SELECT FROM vecplug.migrations WHERE name = '0002_vectorizers') AS vecplug_apply \gset
\if :vecplug_apply
\ir core/migrations/0002_vectorizers.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('0002_vectorizers', 'migration');
\endif
SELECT NOT EXISTS (SELECT FROM vecplug.migrations WHERE name = '0003_roles') AS vecplug_apply \gset
\if :vecplug_apply
\ir core/migrations/0003_roles.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('0003_roles', 'migration');
\endif
SELECT NOT EXISTS (SELECT FROM vecplug.migrations WHERE name = '0004_chunks') AS vecplug_apply \gset
\if :vecplug_apply
\ir core/migrations/0004_chunks.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('0004_chunks', 'migration');
\endif
SELECT NOT EXISTS (SELECT FROM vecplug.migrations WHERE name = '0005_write_path') AS vecplug_apply \gset
\if :vecplug_apply
\ir core/migrations/0005_write_path.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('0005_write_path', 'migration');
\endif
SELECT NOT EXISTS (SELECT FROM vecplug.migrations WHERE name = '0006_chunk_reembed') AS vecplug_apply \gset
\if :vecplug_apply
\ir core/migrations/0006_chunk_reembed.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('0006_chunk_reembed', 'migration');
\endif

-- Repeatable core files (plain SQL).
\ir core/10_functions.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('core/10_functions.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();
\ir core/15_vectorizer_internals.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('core/15_vectorizer_internals.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();
\ir core/20_vectorizers.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('core/20_vectorizers.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();
\ir core/21_vectorizer_triggers.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('core/21_vectorizer_triggers.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();
\ir core/22_reembed.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('core/22_reembed.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();
\ir core/23_worker_api.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('core/23_worker_api.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();

-- Query functions (plpython3u).
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector')
   AND EXISTS (SELECT FROM pg_available_extensions WHERE name = 'plpython3u')
   AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS vecplug_query_layer \gset
\if :vecplug_query_layer
CREATE EXTENSION IF NOT EXISTS plpython3u;
SELECT quote_ident(n.nspname) AS vecplug_vector_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector' \gset
SET LOCAL search_path = vecplug, :vecplug_vector_schema, pg_catalog;
\ir query/10_embed.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('query/10_embed.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();
\ir query/15_sync_chunks.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('query/15_sync_chunks.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();
\ir query/20_sync.sql
INSERT INTO vecplug.migrations (name, kind) VALUES ('query/20_sync.sql', 'repeatable')
    ON CONFLICT (name) DO UPDATE SET checksum = NULL, applied_at = now();
SET LOCAL search_path = pg_catalog, pg_temp;
\else
\echo 'vecplug: query functions not installed: they need pgvector enabled, plpython3u and a superuser. Embed queries in your application with vecplug_pgvector.search() instead.'
\endif

\if :{?server_url}
UPDATE vecplug.settings SET value = rtrim(:'server_url', '/'), updated_at = now() WHERE name = 'server_url';
\endif
\if :{?api_key}
UPDATE vecplug.settings SET value = nullif(:'api_key', ''), updated_at = now() WHERE name = 'api_key';
\endif
COMMIT;
