#!/usr/bin/env bash
# GPU check for one H100/H200 (torch 2.11, transformers, sentence-transformers; no
# flash-attn, no network): parity and throughput, vecplug vs sentence-transformers,
# for random-weight base and large shapes, short paragraphs and ~512-token documents.
# A few minutes in all. Results: the printed tables, and JSON in $OUT (or ./gpu-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-bench}
mkdir -p "$out"
export PYTHONPATH="$PWD:$PWD/adapters${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export VECPLUG_CACHE=${VECPLUG_CACHE:-/tmp/vecplug-cache}
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
for shape in base large; do
    python3 -m vecplug bench --device cuda --shape "$shape" --full --repeat 3 --json "$out/bench-$shape.json"
done
