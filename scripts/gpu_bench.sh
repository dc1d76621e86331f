#!/usr/bin/env bash
# GPU check for one H100/H200 (torch 2.11, transformers, sentence-transformers; no
# flash-attn, no network): parity and throughput, vecplug vs sentence-transformers,
# for random-weight base and large shapes, short paragraphs and ~512-token documents.
# A few minutes in all. Results: the printed tables, and JSON in $OUT (or ./gpu-bench).
# Dry run on a CPU (checks the script, not the GPU paths):
#   DEVICE=cpu SHAPES=tiny BENCH_SIZE=--quick scripts/gpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-bench}
mkdir -p "$out"
export PYTHONPATH="$PWD:$PWD/adapters${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export VECPLUG_CACHE=${VECPLUG_CACHE:-/tmp/vecplug-cache}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
"$python" -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
for shape in ${SHAPES:-base large}; do
    "$python" -m vecplug bench --device "$device" --shape "$shape" ${BENCH_SIZE:---full --repeat 3} \
        --json "$out/bench-$shape.json"
done
