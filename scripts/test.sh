#!/usr/bin/env bash
# The one test command: set up everything on a fresh machine, then run every test.
#
#   ./scripts/test.sh                            # venv, torch (CPU), the built wheel, every test, bench smoke run
#   ./scripts/test.sh -m "not slow and not pg"   # the fast loop (CONTRIBUTING.md): arguments go to pytest,
#   ./scripts/test.sh server/test_client.py      #   and with any argument the bench smoke run is skipped
#
# It installs the *built wheel*, not the checkout, so files the code reads at
# run time must really ship in the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VECPLUG_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip wheel build
# torch first, pinned: a bare requirement would pull a multi-GB CUDA build.
$PIP install --quiet "torch==2.13.0"

rm -rf dist build
"$VENV/bin/python" -m build --wheel --outdir dist . >/dev/null
wheel=$(ls dist/vecplug-*.whl)
$PIP install --quiet "${wheel}[all,dev]"
$PIP install --quiet --force-reinstall --no-deps "$wheel"
# the MiniLM model plugin: its own distribution, built and installed like a third party's
"$VENV/bin/python" -m build --wheel --outdir dist plugins/vecplug-minilm >/dev/null
plugin_wheel=$(ls dist/vecplug_minilm-*.whl)
$PIP install --quiet "$plugin_wheel"
$PIP install --quiet --force-reinstall --no-deps "$plugin_wheel"

# Debian's docker-compose, for tests/project/test_compose.py (`docker-compose config`; no Docker engine needed)
if ! command -v docker-compose >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install --no-install-recommends \
            docker-compose >/dev/null
    else
        echo "test.sh: docker-compose is missing; install it once: sudo apt-get install docker-compose" >&2
    fi
fi

# PostgreSQL 15 + plpython3u + pgvector for tests/postgres/ (quick when already installed)
./scripts/install_postgres.sh >/dev/null
export VECPLUG_TEST_POSTGRES=required

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Run from tests/ so `import vecplug` finds the installed wheel, not the checkout.
cd tests
../"$VENV"/bin/python -c "import vecplug, sys; print('testing', vecplug.__file__, file=sys.stderr)"
../"$VENV"/bin/python -m pytest -p no:cacheprovider -q "$@"
cd ..
# the benchmark cannot rot: a quick side-by-side run on a tiny model (the full run only)
if [ "$#" -eq 0 ]; then
    "$VENV/bin/vecplug" bench --quick
fi
