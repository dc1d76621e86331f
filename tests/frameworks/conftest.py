"""Fixtures of the LangChain and LlamaIndex tests: one keyed `vecplug serve` of the tiny model, the MiniLM plugin."""
from __future__ import annotations

import os

import pytest

SERVER_KEY = "frameworks-key"


@pytest.fixture(scope="session")
def keyed_server(tiny_model_dir):
    """`vecplug serve` of the tiny model in float32 (exact parity) that wants ``SERVER_KEY``, shared by both files."""
    from vecplug.testing import running_server

    env = {name: value for name, value in os.environ.items() if not name.startswith("VECPLUG_")}
    with running_server(tiny_model_dir, "--dtype", "float32", env={**env, "VECPLUG_API_KEY": SERVER_KEY}) as server:
        yield server


@pytest.fixture
def minilm_name():
    """The MiniLM plugin's model (real weights: answers mean something); ./scripts/test.sh installs the plugin."""
    pytest.importorskip("vecplug_minilm")
    return "minilm"
