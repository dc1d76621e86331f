"""Shared fixtures: an isolated environment, a tiny local ModernBERT, plugin registration.

No test touches the network: HF_HUB_OFFLINE=1 and an empty HF_HOME for
every test, and models are random-weight ModernBERTs written by
``vecplug.testing`` into a session temp folder.
"""
from __future__ import annotations

import os
import tempfile

# Before anything imports huggingface_hub, which reads these once at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="vecplug-hf-home-")

import pytest  # noqa: E402

import vecplug  # noqa: E402
from vecplug.testing import write_model  # noqa: E402
from pg_rig import fresh_db, managed_db, pg_cluster  # noqa: E402,F401  (PostgreSQL, one cluster per session)
from pg_vectorizer_helpers import vz_server  # noqa: E402,F401  (an embedding server for the vectorizer tests)


@pytest.fixture(scope="session")
def hf_home():
    """The session's private HF cache (set above, before huggingface_hub's import)."""
    from pathlib import Path

    return Path(os.environ["HF_HOME"])


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, hf_home):
    """Offline hub, private HF cache, no VECPLUG_* settings; plugin manager left as found."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    for name in list(os.environ):
        if name.startswith("VECPLUG_"):
            monkeypatch.delenv(name)
    vecplug.load_plugins()
    before = {vecplug.pm.get_name(plugin): plugin for plugin in vecplug.pm.get_plugins()}
    yield
    after = {vecplug.pm.get_name(plugin): plugin for plugin in vecplug.pm.get_plugins()}
    for name, plugin in after.items():
        if name not in before:
            vecplug.pm.unregister(plugin)
    for name, plugin in before.items():
        if name not in after:
            vecplug.pm.register(plugin, name=name)


@pytest.fixture
def register_plugin():
    """Register plugin objects for one test; they are unregistered afterwards, even on failure."""
    registered = []

    def register(plugin, name=None):
        vecplug.pm.register(plugin, name=name)
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        if vecplug.pm.is_registered(plugin):
            vecplug.pm.unregister(plugin)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random-weight ModernBERT with the nomic prompts, in the hub layout."""
    return write_model(tmp_path_factory.mktemp("models") / "tiny-modernbert", shape="tiny")


@pytest.fixture(scope="session")
def tiny_model_no_prompts_dir(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("models") / "tiny-no-prompts", shape="tiny", prompts={}, seed=1)


@pytest.fixture
def tiny_model(tiny_model_dir):
    """The tiny model loaded in float32 (exact comparisons)."""
    return vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir):
    """One ``vecplug serve`` of the tiny model in float32 (exact parity), shared by the server tests."""
    from vecplug.testing import running_server

    with running_server(tiny_model_dir, "--dtype", "float32") as server:
        yield server


# Markers by where a test lives and what it uses, so a new test file gets them by living
# in its folder or asking for a fixture (registered in pyproject.toml, --strict-markers).
FOLDER_MARKERS = {"postgres": "pg", "server": "server"}
POSTGRES_FIXTURES = {"pg_cluster", "fresh_db", "managed_db"}  # each starts (or needs) the session's cluster


def pytest_collection_modifyitems(config, items):
    """`pg` for tests under tests/postgres/ or using a PostgreSQL fixture; `server` for tests/server/."""
    from pathlib import Path

    tests_root = Path(__file__).parent
    for item in items:
        try:
            folder = Path(item.path).relative_to(tests_root).parts[0]
        except ValueError:
            folder = None
        marker = FOLDER_MARKERS.get(folder)
        if marker:
            item.add_marker(marker)
        if marker != "pg" and POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("pg")
