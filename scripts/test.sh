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

source scripts/venv.sh  # VENV, PIP; torch pinned
$PIP install --upgrade pip wheel build

rm -rf dist build
"$VENV/bin/python" -m build --wheel --outdir dist . >/dev/null
wheel=$(ls dist/vecplug-*.whl)
$PIP install "${wheel}[all,dev]"
$PIP install --force-reinstall --no-deps "$wheel"
# the MiniLM model plugin: its own distribution, built and installed like a third party's
"$VENV/bin/python" -m build --wheel --outdir dist plugins/vecplug-minilm >/dev/null
plugin_wheel=$(ls dist/vecplug_minilm-*.whl)
$PIP install "$plugin_wheel"
$PIP install --force-reinstall --no-deps "$plugin_wheel"

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
