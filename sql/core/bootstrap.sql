-- vecplug: the schema and the record of what is installed. Safe to run again:
-- it creates only what is missing and changes nothing that exists.

CREATE SCHEMA IF NOT EXISTS vecplug;

-- One row per applied SQL file. Migrations (core/migrations/NNNN_*.sql) are
-- applied once each, in number order; the highest number applied is the
-- schema version. Repeatable files (core/NN_*.sql, query/NN_*.sql: functions,
-- views, grants, all CREATE OR REPLACE) are applied again whenever their
-- checksum changes. `psql -f install.sql` records no checksum, so the next
-- `vecplug pg install` re-applies the repeatable files once.
CREATE TABLE IF NOT EXISTS vecplug.migrations (
    name text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('migration', 'repeatable')),
    checksum text,
    vecplug_version text,
    applied_at timestamptz NOT NULL DEFAULT now()
);
