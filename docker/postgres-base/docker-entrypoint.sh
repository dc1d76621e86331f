#!/bin/sh
# The part of the official postgres image's entrypoint that docker-compose.yml
# uses: on first start, a cluster in $PGDATA whose superuser "postgres" has
# $POSTGRES_PASSWORD (password logins from anywhere, trust on the local
# socket); then `postgres ARGS...` as user postgres.
set -eu
case "${1:-postgres}" in
    -*) set -- postgres "$@" ;;
esac
if [ "${1:-postgres}" != postgres ]; then
    exec "$@"
fi
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set: the superuser needs a password}"
    password_file=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    chown postgres "$password_file"
    as_postgres initdb --username=postgres --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "docker-entrypoint.sh: initialised a cluster in $PGDATA" >&2
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
