"""The synthetic corpus (tests/store_corpus.py) loaded once per session into each real store.

``store`` is parametrized over the stores: its value is the command-line
options that name the store, and ``open_store`` opens it through the
``vecplug_open_store`` hook as the commands do. Chroma and Qdrant live in
folders of their own; Qdrant's local mode admits one client at a time, so
every test opens and closes its own.
"""
from __future__ import annotations

import pytest

import store_corpus
import vecplug
from vecplug.stores import StoreSelection

STORES = ["chroma", "qdrant"]


@pytest.fixture(scope="session")
def chroma_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("chroma-corpus")
    store_corpus.load_chroma(path)
    return path


@pytest.fixture(scope="session")
def qdrant_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("qdrant-corpus")
    store_corpus.load_qdrant(path)
    return path


@pytest.fixture(params=STORES)
def store(request) -> list[str]:
    """The options that name the corpus's store (one test per store)."""
    if request.param == "chroma":
        return ["--chroma", str(request.getfixturevalue("chroma_corpus")), "--collection", "corpus"]
    return ["--qdrant", str(request.getfixturevalue("qdrant_corpus")), "--collection", "corpus"]


def selection_of(options: list[str]) -> StoreSelection:
    pairs = dict(zip(options[::2], options[1::2]))
    return StoreSelection(**{key.lstrip("-").replace("-", "_"): value for key, value in pairs.items()})


def open_store(options: list[str]):
    """The store the options name, opened through the hook (close it after)."""
    vecplug.load_plugins()
    return vecplug.pm.hook.vecplug_open_store(selection=selection_of(options))
