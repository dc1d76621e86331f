# Sourced by test.sh and demo.sh from the repository root: the virtual
# environment ($VECPLUG_VENV, default .venv, made with $PYTHON) with torch
# installed first and pinned. Sets VENV and PIP for the script that sources it.
PYTHON=${PYTHON:-python3}
VENV=${VECPLUG_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --quiet --disable-pip-version-check"
# torch first, pinned: a bare requirement would pull a multi-GB CUDA build.
$PIP install "torch==2.13.0"
