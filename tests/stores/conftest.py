"""The synthetic corpus (tests/store_corpus.py) loaded once per session into each real store.

PostgreSQL gets it the documented way: plain INSERTs into a table with a
vectorizer, embedded by one worker run (its tests are marked ``pg``).

``store`` is parametrized over the stores: its value is the command-line
options that name the store, and ``open_store`` opens it through the
``vecplug_open_store`` hook as the commands do. Chroma, Qdrant, Milvus Lite
and LanceDB live in folders of their own; Qdrant's local mode and Milvus
Lite admit one client (one process) at a time, so every test opens and
closes its own.
"""
from __future__ import annotations

import pytest

import store_corpus
import vecplug
from vecplug.stores import StoreSelection

STORES = ["chroma", "qdrant", "milvus", "lancedb", pytest.param("postgres", marks=pytest.mark.pg)]


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


@pytest.fixture(scope="session")
def milvus_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("milvus-corpus") / "corpus.db"
    store_corpus.load_milvus(path)
    return path


@pytest.fixture(scope="session")
def lancedb_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("lancedb-corpus")
    store_corpus.load_lancedb(path)
    return path


@pytest.fixture(scope="session")
def postgres_corpus(pg_cluster):
    """The DSN of database ``stores_corpus``: table ``corpus`` with a vectorizer, every row embedded by MiniLM."""
    import vecplug_pgvector
    from pg_vectorizer_helpers import install, one_torch_thread

    name = pg_cluster.create_database("stores_corpus")
    dsn = pg_cluster.dsn(name)
    install(dsn, None)
    with one_torch_thread():
        model = vecplug.load_model(store_corpus.MODEL)
    with pg_cluster.connect(name) as conn:
        conn.execute(store_corpus.create_table_sql("corpus"))
        conn.execute("SELECT vecplug.create_vectorizer('corpus', 'body', dimensions => %s)", [model.dimensions])
        store_corpus.insert_rows(conn, "corpus")
    with one_torch_thread():
        report = vecplug_pgvector.Worker(dsn, model, show_progress=False).run(once=True)
    assert report.embedded == len(store_corpus.documents()), report
    yield dsn
    pg_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=STORES)
def store(request) -> list[str]:
    """The options that name the corpus's store (one test per store)."""
    if request.param == "chroma":
        return ["--chroma", str(request.getfixturevalue("chroma_corpus")), "--collection", "corpus"]
    if request.param == "postgres":
        return ["--dsn", request.getfixturevalue("postgres_corpus"), "--table", "corpus"]
    if request.param == "milvus":
        return ["--milvus", str(request.getfixturevalue("milvus_corpus")), "--collection", "corpus"]
    if request.param == "lancedb":
        return ["--lancedb", str(request.getfixturevalue("lancedb_corpus")), "--table", "corpus"]
    return ["--qdrant", str(request.getfixturevalue("qdrant_corpus")), "--collection", "corpus"]


def selection_of(options: list[str]) -> StoreSelection:
    pairs = dict(zip(options[::2], options[1::2]))
    return StoreSelection(**{key.lstrip("-").replace("-", "_"): value for key, value in pairs.items()})


def open_store(options: list[str]):
    """The store the options name, opened through the hook (close it after)."""
    vecplug.load_plugins()
    return vecplug.pm.hook.vecplug_open_store(selection=selection_of(options))


def forbid_model_loads(monkeypatch) -> None:
    """Make any model load in this test fail: work on stored vectors must not need one."""
    import vecplug.registry

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded for work on stored vectors")

    monkeypatch.setattr(vecplug.registry, "resolve", no_model)


def usage_error_line(arguments: list[str], capsys) -> str:
    """The one line a command prints for a mistake, through the command line's entry point in this process
    (test_store_errors.py runs real processes); fails unless it exits 2 with exactly one line."""
    from vecplug.cli import main

    with pytest.raises(SystemExit) as exited:
        main(arguments)
    error = capsys.readouterr().err
    assert exited.value.code == 2, error
    assert len(error.strip().splitlines()) == 1, error
    return error
