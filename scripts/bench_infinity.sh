#!/usr/bin/env bash
# vecplug serve against Infinity (infinity-emb, its torch engine) under the same load, in one run.
#
#   ./scripts/bench_infinity.sh                      # base-shaped random-weight model, 600 paragraphs
#   SHAPE=tiny ./scripts/bench_infinity.sh --size quick --repeat 1   # a smoke run
#   INFINITY_DTYPE=bfloat16 ./scripts/bench_infinity.sh              # Infinity's dtype (default: its "auto")
#
# Infinity pins its own dependency versions (transformers, sentence-transformers 3,
# numpy 1), so it lives in a venv of its own ($INFINITY_VENV), outside the test
# command. It serves the same model files; scripts/bench_server.py drives it
# with the same client, texts and concurrency as vecplug serve, the client adding
# the document prompt (Infinity applies none), and reports both side by side with
# the engine embedding the texts directly. Extra arguments go to bench_server.py.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VECPLUG_VENV:-.venv}
INFINITY_VENV=${INFINITY_VENV:-$HOME/.cache/vecplug/infinity-venv}
SHAPE=${SHAPE:-base}
PORT=${INFINITY_PORT:-7997}
INFINITY_DTYPE=${INFINITY_DTYPE:-auto}

if [ ! -x "$INFINITY_VENV/bin/infinity_emb" ]; then
    python3 -m venv "$INFINITY_VENV"
    "$INFINITY_VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first, pinned: a bare requirement would pull a multi-GB CUDA build
    "$INFINITY_VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$INFINITY_VENV/bin/python" -m pip install --quiet "infinity-emb[torch,server]==0.0.78"
fi

MODEL=$("$VENV/bin/python" -c "from vecplug.bench import bench_model_dir; print(bench_model_dir('$SHAPE'))")
LOG=$(mktemp -t infinity-XXXXXX.log)
HF_HUB_OFFLINE=1 INFINITY_ANONYMOUS_USAGE_STATS=0 DO_NOT_TRACK=1 \
    "$INFINITY_VENV/bin/infinity_emb" v2 --model-id "$MODEL" --engine torch --device cpu --dtype "$INFINITY_DTYPE" \
    --host 127.0.0.1 --port "$PORT" --log-level warning >"$LOG" 2>&1 &
INFINITY_PID=$!
trap 'kill $INFINITY_PID 2>/dev/null; wait $INFINITY_PID 2>/dev/null; rm -f "$LOG"' EXIT

for _ in $(seq 1 600); do
    if "$VENV/bin/python" -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" 2>/dev/null; then
        break
    fi
    if ! kill -0 $INFINITY_PID 2>/dev/null; then
        echo "Infinity exited:" >&2; cat "$LOG" >&2; exit 1
    fi
    sleep 1
done
echo "Infinity $("$INFINITY_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("infinity-emb"), "transformers", m.version("transformers"), "sentence-transformers", m.version("sentence-transformers"))') on port $PORT, dtype $INFINITY_DTYPE" >&2

"$VENV/bin/python" scripts/bench_server.py --model "$MODEL" --infinity-url "http://127.0.0.1:$PORT" \
    --infinity-model "$MODEL" "$@"
