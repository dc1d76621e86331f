#!/usr/bin/env bash
# Start docker-compose.yml's stack for real, check it works, tear it down.
#
#   sudo ./scripts/compose_smoke.sh          # a few minutes the first time (images), about a minute after
#
# On a machine with a Docker engine (it starts dockerd, installing Debian's
# docker.io first if it must and can, when none runs) it:
#   1. builds the images: docker/postgres/Dockerfile and docker/vecplug/Dockerfile
#      on base images given by build arguments. Where official images cannot be
#      pulled (the default here) those bases are made locally: a Debian bookworm
#      from debootstrap (`vecplug-base:bookworm`) and, on it, a stand-in for
#      pgvector/pgvector (docker/postgres-base/Dockerfile). SMOKE_OFFICIAL=1 uses
#      python:3.11-slim and pgvector/pgvector:pg17 instead;
#   2. brings up postgres, vecplug (serve), pg-install and pg-worker with
#      docker/compose.host.yml: the host's network, every service on 127.0.0.1
#      with its own port, a tiny generated model mounted as VECPLUG_MODEL
#      (no hub download). Qdrant and Chroma are not started: their images
#      cannot be pulled or built here (the demo uses their local modes);
#   3. waits for health (pg_isready, /health), checks SQL's vecplug.embed_query
#      and the worker's /metrics, runs `vecplug demo --dsn ... --server-url ...`
#      against the stack (the host's vecplug when there is one, else inside the
#      vecplug container);
#   4. tears everything down (containers, volumes, the dockerd it started) on
#      any exit, and exits non-zero with a "compose_smoke: FAILED" line naming
#      the step when something fails.
#
# Environment: SMOKE_PG_PORT (55432), SMOKE_SERVER_PORT (18080),
# SMOKE_METRICS_PORT (19100), SMOKE_MODEL_DIR (a model directory to serve
# instead of the generated tiny one), SMOKE_VECPLUG (the vecplug command for
# the demo; default $VECPLUG_VENV/bin/vecplug, else `vecplug` on PATH, else the
# container's), SMOKE_OFFICIAL=1, SMOKE_KEEP=1 (leave the stack running),
# SMOKE_WHEELS (where a local CPU torch wheel is looked for: /opt/wheels),
# SMOKE_PIP_INDEX (the index torch's dependencies come from when a local torch
# wheel is used: https://pypi.org/simple).
# Not part of .ci/run: it needs root, apt and minutes (docs/compose-smoke.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

USER_MODEL_DIR=${SMOKE_MODEL_DIR:-}
PG_PORT=${SMOKE_PG_PORT:-55432}
SERVER_PORT=${SMOKE_SERVER_PORT:-18080}
METRICS_PORT=${SMOKE_METRICS_PORT:-19100}
PROJECT=vecplug-smoke
TORCH_VERSION=$(sed -n 's/^ARG TORCH_VERSION=//p' docker/vecplug/Dockerfile)
WORK=$(mktemp -d /tmp/vecplug-compose-smoke.XXXXXX)
chmod 711 "$WORK"  # the model inside is mounted for the container's user; the env file with passwords stays 600
umask 077
STEP="starting"
STARTED_DOCKERD=""
COMPOSE=()

say() { echo "compose_smoke: $*" >&2; }
fail() { say "FAILED: $STEP: $*"; exit 1; }
step() { STEP=$1; say "== $1"; }

teardown() {
    local status=$?
    set +e
    if [ "$status" != 0 ] && [ ${#COMPOSE[@]} -gt 0 ]; then
        say "the services' last log lines:"
        "${COMPOSE[@]}" logs --no-color --tail 40 >&2 2>&1
    fi
    if [ -n "${SMOKE_KEEP:-}" ] && [ ${#COMPOSE[@]} -gt 0 ]; then
        say "SMOKE_KEEP is set: the stack stays up; remove it with: ${COMPOSE[*]} down -v"
    elif [ ${#COMPOSE[@]} -gt 0 ]; then
        say "tearing down"
        "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1
    fi
    find "$ROOT/docker/local" -mindepth 1 ! -name README.md -delete 2>/dev/null
    if [ -z "${SMOKE_KEEP:-}" ]; then
        rm -rf "$WORK"
        if [ -n "$STARTED_DOCKERD" ]; then
            say "stopping the dockerd this script started (pid $STARTED_DOCKERD)"
            kill "$STARTED_DOCKERD" 2>/dev/null && wait "$STARTED_DOCKERD" 2>/dev/null
        fi
    fi
    if [ "$status" = 0 ]; then say "PASSED"; fi
    exit "$status"
}
trap teardown EXIT
trap 'STEP="$STEP (interrupted)"; exit 130' INT TERM

apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || fail "$1 is missing and this is not root on Debian: install $1"
    say "installing $1 (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install "$1" >"$WORK/apt.log" 2>&1 \
        || { tail -5 "$WORK/apt.log" >&2; fail "apt-get install $1 failed"; }
}

apt_mirror() {  # the Debian mirror this machine's apt uses
    local mirror
    mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '/^URIs:/ && !/security/ {print $2; exit} /^deb / && !/security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
        || true)
    echo "${mirror:-http://deb.debian.org/debian}"
}

step "Docker engine"
command -v docker >/dev/null || apt_install docker.io
if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || apt_install docker.io
    [ "$(id -u)" = 0 ] || fail "no Docker engine answers and starting dockerd needs root"
    say "no engine answers: starting dockerd (host networking only: --bridge=none --iptables=false)"
    dockerd --bridge=none --iptables=false >"$WORK/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -5 "$WORK/dockerd.log" >&2; fail "dockerd did not start (log above)"; }
fi
say "engine $(docker version --format '{{.Server.Version}}')"
if docker compose version >/dev/null 2>&1; then
    COMPOSE_COMMAND=(docker compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE_COMMAND=(docker-compose)
else
    apt_install docker-compose
    COMPOSE_COMMAND=(docker-compose)
fi
say "compose: $("${COMPOSE_COMMAND[@]}" version --short 2>/dev/null || echo unknown) (${COMPOSE_COMMAND[*]})"
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}  # builds use the host network; the classic builder needs no buildx

step "base images"
if [ -n "${SMOKE_OFFICIAL:-}" ]; then
    PYTHON_IMAGE=python:3.11-slim
    PGVECTOR_IMAGE=pgvector/pgvector:pg17
    PG_MAJOR=17
else
    PYTHON_IMAGE=vecplug-base:bookworm
    PGVECTOR_IMAGE=vecplug-smoke/pgvector:15
    PG_MAJOR=15  # Debian bookworm's
    if ! docker image inspect "$PYTHON_IMAGE" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || apt_install debootstrap
        mirror=$(apt_mirror)
        say "making $PYTHON_IMAGE with debootstrap from $mirror"
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
            bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -5 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
        rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
        tar -C "$WORK/rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$PYTHON_IMAGE" >/dev/null
        rm -rf "$WORK/rootfs"
    fi
    if ! docker image inspect "$PGVECTOR_IMAGE" >/dev/null 2>&1; then
        say "building $PGVECTOR_IMAGE (docker/postgres-base: PostgreSQL $PG_MAJOR, pgvector)"
        docker build --network host -f docker/postgres-base/Dockerfile --build-arg BASE_IMAGE="$PYTHON_IMAGE" \
            --build-arg PG_MAJOR="$PG_MAJOR" -t "$PGVECTOR_IMAGE" . >"$WORK/pgvector-build.log" 2>&1 \
            || { tail -20 "$WORK/pgvector-build.log" >&2; fail "building $PGVECTOR_IMAGE failed"; }
    fi
fi
say "python base: $PYTHON_IMAGE; PostgreSQL base: $PGVECTOR_IMAGE (PostgreSQL $PG_MAJOR)"

step "stack configuration"
POSTGRES_PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
VECPLUG_API_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
MODEL_DIR=${USER_MODEL_DIR:-$WORK/model}
mkdir -p "$MODEL_DIR"
chmod 755 "$MODEL_DIR"
# The user's .env is not read: every variable the compose files use comes from here.
cat >"$WORK/env" <<EOF
POSTGRES_PASSWORD=$POSTGRES_PASSWORD
VECPLUG_API_KEY=$VECPLUG_API_KEY
VECPLUG_MODEL=/smoke-model
VECPLUG_SERVER_URL=http://127.0.0.1:$SERVER_PORT
SMOKE_MODEL_DIR=$MODEL_DIR
SMOKE_PG_PORT=$PG_PORT
SMOKE_SERVER_PORT=$SERVER_PORT
SMOKE_METRICS_PORT=$METRICS_PORT
EOF
set -a; . "$WORK/env"; set +a
COMPOSE=("${COMPOSE_COMMAND[@]}" --env-file "$WORK/env" -p "$PROJECT" -f docker-compose.yml -f docker/compose.host.yml)
"${COMPOSE[@]}" config -q || fail "the compose files do not resolve"
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true  # what an interrupted earlier run left

step "building the images"
TORCH_INDEX_ARGS=()
if [ -z "${SMOKE_OFFICIAL:-}" ]; then
    # The host's CA bundle (a TLS-inspecting proxy) and, when there is one, its CPU torch wheel:
    # download.pytorch.org may be unreachable, PyPI mirrors are not (docker/local/README.md).
    cp -p /etc/ssl/certs/ca-certificates.crt docker/local/ca-certificates.crt
    { echo "[global]"; echo "cert = /opt/vecplug-local/ca-certificates.crt"; } >docker/local/pip.conf
    wheel=$(ls "${SMOKE_WHEELS:-/opt/wheels}"/torch-"$TORCH_VERSION"+cpu-cp311-*.whl 2>/dev/null | head -1 || true)
    if [ -n "$wheel" ]; then
        cp -p "$wheel" docker/local/
        echo "find-links = /opt/vecplug-local" >>docker/local/pip.conf
        TORCH_INDEX_ARGS=(--build-arg "TORCH_INDEX_URL=${SMOKE_PIP_INDEX:-https://pypi.org/simple}")
        say "torch from $wheel"
    fi
fi
"${COMPOSE[@]}" build --build-arg BASE_IMAGE="$PGVECTOR_IMAGE" --build-arg PG_MAJOR="$PG_MAJOR" postgres \
    >"$WORK/build-postgres.log" 2>&1 || { tail -20 "$WORK/build-postgres.log" >&2; fail "the postgres image"; }
"${COMPOSE[@]}" build --build-arg BASE_IMAGE="$PYTHON_IMAGE" "${TORCH_INDEX_ARGS[@]}" vecplug \
    >"$WORK/build-vecplug.log" 2>&1 || { tail -20 "$WORK/build-vecplug.log" >&2; fail "the vecplug image"; }
find docker/local -mindepth 1 ! -name README.md -delete
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(vecplug|$PROJECT)" >&2 || true

if [ -z "$USER_MODEL_DIR" ]; then
    step "a tiny model (vecplug.testing.write_model, random weights)"
    docker run --rm --network none --user root -v "$MODEL_DIR:/model" vecplug:cpu \
        python -c "from vecplug.testing import write_model; write_model('/model')" >"$WORK/model.log" 2>&1 \
        || { tail -5 "$WORK/model.log" >&2; fail "write_model in the vecplug image"; }
    chmod -R a+rX "$MODEL_DIR"
fi

step "the host-network compose file"
# An override cannot remove docker-compose.yml's published ports (compose v1 concatenates lists; v2 would
# need !reset), and Docker refuses port bindings on the host network: resolve both files into one and drop
# the ports of the services on the host network (yaml from the vecplug image, which has it).
"${COMPOSE[@]}" config >"$WORK/merged.yml" || fail "docker compose config"
docker run --rm -i --network none vecplug:cpu python -c '
import sys, yaml
compose = yaml.safe_load(sys.stdin)
for service in compose["services"].values():
    if service.get("network_mode") == "host":
        service.pop("ports", None)
yaml.safe_dump(compose, sys.stdout, sort_keys=False)' <"$WORK/merged.yml" >"$WORK/compose.yml" \
    || fail "dropping the published ports"
COMPOSE=("${COMPOSE_COMMAND[@]}" --env-file "$WORK/env" -p "$PROJECT" -f "$WORK/compose.yml")

step "bringing the stack up (postgres, vecplug, pg-install, pg-worker; no Qdrant, no Chroma)"
"${COMPOSE[@]}" up -d --no-build postgres vecplug pg-install pg-worker 2>&1 | sed 's/^/    /' >&2 \
    || fail "docker compose up (output above)"

step "waiting for health"
container_health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' \
    "$("${COMPOSE[@]}" ps -q "$1")" 2>/dev/null || echo missing; }
container_exit() { docker inspect -f '{{if eq .State.Status "exited"}}exited with status {{.State.ExitCode}}{{end}}' \
    "$("${COMPOSE[@]}" ps -q "$1")" 2>/dev/null; }
for _ in $(seq 150); do
    [ "$(container_health postgres)" = healthy ] && [ "$(container_health vecplug)" = healthy ] && break
    for service in postgres vecplug; do  # a container that stopped never becomes healthy: fail now
        stopped=$(container_exit "$service")
        [ -z "$stopped" ] || fail "$service $stopped"
    done
    sleep 2
done
[ "$(container_health postgres)" = healthy ] || fail "postgres is $(container_health postgres)"
[ "$(container_health vecplug)" = healthy ] || fail "vecplug is $(container_health vecplug)"
"${COMPOSE[@]}" exec -T postgres pg_isready -h 127.0.0.1 -p "$PG_PORT" -U postgres >&2 || fail "pg_isready"
health=$(curl -fsS --max-time 10 "http://127.0.0.1:$SERVER_PORT/health") || fail "GET /health"
say "GET /health: $health"

step "pg-install and pg-worker"
install_status=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$("${COMPOSE[@]}" ps -a -q pg-install)")
[ "$install_status" = "exited 0" ] || fail "pg-install is '$install_status'"
"${COMPOSE[@]}" logs --no-color pg-install 2>&1 | sed 's/^/    /' >&2
for _ in $(seq 30); do curl -fsS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics" 2>/dev/null && break; sleep 1; done
[ -s "$WORK/metrics" ] || fail "the worker's /metrics on 127.0.0.1:$METRICS_PORT does not answer"
say "worker /metrics: $(grep -c '^vecplug' "$WORK/metrics") vecplug_* samples"

step "SQL: vecplug.embed_query through the server"
psql_in_postgres() { "${COMPOSE[@]}" exec -T postgres psql -X -q -At -v ON_ERROR_STOP=1 -h /var/run/postgresql \
    -p "$PG_PORT" -U postgres -d postgres -c "$1"; }
dims=$(psql_in_postgres "SELECT vector_dims(vecplug.embed_query('how long can a text be?'))") \
    || fail "SELECT vecplug.embed_query(...) failed"
say "vecplug.embed_query returned a vector of $dims dimensions"
psql_in_postgres "SELECT extname || ' ' || extversion FROM pg_extension ORDER BY 1" | sed 's/^/    /' >&2

step "the pg-worker service embeds rows inserted with plain SQL"
psql_in_postgres "CREATE TABLE smoke_notes (id int PRIMARY KEY, body text NOT NULL);
    SELECT vecplug.create_vectorizer('smoke_notes', 'body');
    INSERT INTO smoke_notes VALUES (1, 'PostgreSQL stores rows'), (2, 'ModernBERT reads 8192 tokens'),
                                   (3, 'the worker embeds queued rows')" >/dev/null || fail "a vectorizer on smoke_notes"
for _ in $(seq 60); do
    embedded=$(psql_in_postgres "SELECT count(embedding) FROM smoke_notes") || fail "counting embedded rows"
    [ "$embedded" = 3 ] && break
    sleep 1
done
[ "$embedded" = 3 ] || fail "after 60 s the worker has embedded $embedded of 3 rows"
nearest=$(psql_in_postgres "SELECT id FROM smoke_notes
    ORDER BY embedding <=> vecplug.embed_query('ModernBERT reads 8192 tokens') LIMIT 1") || fail "the nearest row"
[ "$nearest" = 2 ] || fail "the row nearest to its own text is $nearest, not 2"
say "the worker embedded 3 rows; ORDER BY embedding <=> vecplug.embed_query(...) finds the right one"

step "vecplug demo against the stack"
DSN="postgresql://postgres:$POSTGRES_PASSWORD@127.0.0.1:$PG_PORT/postgres"
SERVER_URL="http://127.0.0.1:$SERVER_PORT"
VECPLUG_BIN=${SMOKE_VECPLUG:-}
if [ -z "$VECPLUG_BIN" ] && [ -x "${VECPLUG_VENV:-.venv}/bin/vecplug" ]; then VECPLUG_BIN=${VECPLUG_VENV:-.venv}/bin/vecplug; fi
if [ -z "$VECPLUG_BIN" ] && command -v vecplug >/dev/null; then VECPLUG_BIN=vecplug; fi
if [ -n "$VECPLUG_BIN" ]; then
    demo=("$VECPLUG_BIN" demo); demo_model=$MODEL_DIR; where="this machine ($VECPLUG_BIN)"
else
    demo=("${COMPOSE[@]}" run --rm --no-deps -T vecplug vecplug demo); demo_model=/smoke-model; where="the vecplug container"
fi
demo_args=(--dsn "$DSN" --quiet)
if "${demo[@]}" --help 2>/dev/null | grep -q -- --server-url; then
    demo_args+=(--server-url "$SERVER_URL")  # the server's model is the demo's
else
    say "this vecplug's demo has no --server-url: it runs with --dsn only (it embeds in its own process)"
    demo_args+=(--model "$demo_model")  # the model the server serves
fi
say "running on $where: vecplug demo ${demo_args[*]//$POSTGRES_PASSWORD/***}"
"${demo[@]}" "${demo_args[@]}" 2>&1 | sed 's/^/    /' >&2 || fail "vecplug demo (output above)"
