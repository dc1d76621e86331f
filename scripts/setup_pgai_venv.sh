#!/usr/bin/env bash
# pgai 0.12 with its vectorizer worker, in a virtual environment of its own, for scripts/bench_pgai.py.
#
#   ./scripts/setup_pgai_venv.sh            # -> ~/.cache/vecplug/pgai-venv (about 7 GB: the worker's dependencies)
#
# Not part of the test command: pgai's worker brings several GB of dependencies.
set -euo pipefail
VENV=${VECPLUG_PGAI_VENV:-$HOME/.cache/vecplug/pgai-venv}
if [ ! -x "$VENV/bin/pgai" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "pgai[vectorizer-worker]==0.12.*"
fi
"$VENV/bin/pgai" --version
echo "$VENV/bin/pgai"
