# Sourced by demo.sh: a throwaway PostgreSQL cluster, set up the way the tests' one is (tests/pg_rig.py):
# initdb in a new temporary folder, trust authentication, 127.0.0.1 on a free port, fsync off, run
# as OS user postgres when we are root (PostgreSQL refuses to run as root), as ourselves otherwise.
#
#   source scripts/throwaway_postgres.sh
#   throwaway_postgres_start "$pg_bin"      # sets THROWAWAY_PG_DSN, THROWAWAY_PG_ROOT
#   trap throwaway_postgres_stop EXIT       # stops it and removes its folder
#
# pg_bin: the bin folder of a PostgreSQL with pgvector and plpython3u, as
# scripts/install_postgres.sh prints it on its last line.

THROWAWAY_PG_HOST=127.0.0.1

_throwaway_postgres_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_throwaway_postgres_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

throwaway_postgres_start() {
    local bin=$1 attempt port
    THROWAWAY_PG_BIN=$bin
    THROWAWAY_PG_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/vecplug-demo-pg.XXXXXX")
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$THROWAWAY_PG_ROOT"
    fi
    _throwaway_postgres_as_owner "$bin/initdb" -D "$THROWAWAY_PG_ROOT/data" -U postgres --auth=trust -E UTF8 \
        --no-locale --no-sync >"$THROWAWAY_PG_ROOT/initdb.log" 2>&1 \
        || { echo "initdb failed:" >&2; tail -20 "$THROWAWAY_PG_ROOT/initdb.log" >&2; return 1; }
    for attempt in 1 2 3; do  # the free port may be taken between the probe and the start
        port=$(_throwaway_postgres_free_port)
        if _throwaway_postgres_as_owner "$bin/pg_ctl" -D "$THROWAWAY_PG_ROOT/data" -l "$THROWAWAY_PG_ROOT/postgres.log" \
                -o "-p $port -k $THROWAWAY_PG_ROOT -c listen_addresses=$THROWAWAY_PG_HOST -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
                -w -t 60 start >/dev/null 2>&1; then
            THROWAWAY_PG_DSN="host=$THROWAWAY_PG_HOST port=$port dbname=postgres user=postgres"
            return 0
        fi
    done
    echo "PostgreSQL did not start:" >&2
    tail -20 "$THROWAWAY_PG_ROOT/postgres.log" >&2
    return 1
}

throwaway_postgres_stop() {
    if [ -n "${THROWAWAY_PG_ROOT:-}" ] && [ -d "$THROWAWAY_PG_ROOT" ]; then
        if [ -f "$THROWAWAY_PG_ROOT/data/postmaster.pid" ]; then
            _throwaway_postgres_as_owner "$THROWAWAY_PG_BIN/pg_ctl" -D "$THROWAWAY_PG_ROOT/data" -m fast -w stop \
                >/dev/null 2>&1 || true
        fi
        rm -rf "$THROWAWAY_PG_ROOT"
    fi
}
