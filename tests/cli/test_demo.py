"""``vecplug demo`` and the README's one-line demo command, run as a person would run them."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from demo_stores import demo_store_count
from terminal import run_with_terminal_stderr

from vecplug.demo import corpus

ROOT = Path(__file__).resolve().parents[2]


def demo(*args: str, env=None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", "demo", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def local_store_count() -> int:
    """The demo's databases without --dsn: every installed demo store but PostgreSQL's (it answers a --dsn only)."""
    return demo_store_count(with_dsn=False)


def all_right(stores: int) -> str:
    answers = len(corpus.QUESTIONS) * stores
    return f"{answers}/{answers} answers found the expected paragraph first."


def top_hits(stdout: str) -> dict[str, list[str]]:
    """Question -> the first-ranked title in each database column."""
    found = {}
    for block in stdout.split("Q: ")[1:]:
        lines = block.splitlines()
        first_row = next(line for line in lines if line.strip().startswith("1. "))
        found[lines[0]] = re.findall(r"1\. (.+?) -?\d\.\d{3}", first_row)
    return found


@pytest.mark.slow  # a whole demo: real MiniLM weights into Chroma and Qdrant
def test_offline_demo_falls_back_to_minilm_and_finds_the_right_paragraphs(tmp_path):
    """HF_HUB_OFFLINE with an empty cache: one line says so, MiniLM answers every question right in both stores."""
    process = demo("--quiet", "--dir", str(tmp_path / "stores"))
    assert process.returncode == 0, process.stderr
    notes = process.stderr.strip().splitlines()
    assert len(notes) == 1 and "nomic-ai/modernbert-embed-base cannot be loaded here" in notes[0], process.stderr
    assert "all-MiniLM-L6-v2" in notes[0]
    assert "Chroma" in process.stdout and "Qdrant local" in process.stdout
    hits = top_hits(process.stdout)
    assert set(hits) == {question for question, _ in corpus.QUESTIONS}
    for question, expected in corpus.QUESTIONS:
        assert hits[question] == [corpus.by_id(expected).title] * local_store_count(), (question, hits[question])
    assert all_right(local_store_count()) in process.stdout
    assert (tmp_path / "stores" / "chroma").is_dir() and (tmp_path / "stores" / "qdrant").is_dir()


@pytest.mark.slow  # two whole demo runs
def test_tiny_is_labelled_meaningless_and_a_named_folder_can_be_reused(tmp_path):
    for _ in range(2):  # the second run replaces the first run's collections instead of failing or mixing
        process = demo("--tiny", "--quiet", "--dir", str(tmp_path))
        assert process.returncode == 0, process.stderr
    assert "MEANINGLESS" in process.stdout and "shared words, not meaning" in process.stdout
    assert process.stdout.count("Q: ") == len(corpus.QUESTIONS)
    assert f"The databases stay in {tmp_path}" in process.stdout


def test_demo_mistakes_are_one_line(tmp_path):
    process = demo("--tiny", "--model", "minilm")
    assert process.returncode == 2 and process.stderr.count("\n") == 1 and "Traceback" not in process.stderr
    process = demo("--model", "no-such-model")
    assert process.returncode == 2 and process.stderr.startswith("Error: unknown model 'no-such-model'")
    process = demo("--tiny", "--server-url", "http://127.0.0.1:1")  # the server's model is the demo's
    assert process.returncode == 2 and process.stderr.count("\n") == 1 and "--server-url or --model" in process.stderr


def test_dsn_is_never_ignored(tmp_path):
    """Until an adapter offers a PostgreSQL demo store, --dsn is refused, not silently skipped."""
    import vecplug

    vecplug.load_plugins()
    if any(implementation.plugin_name == "pgvector"
           for implementation in vecplug.pm.hook.vecplug_demo_store.get_hookimpls()):
        return  # the PostgreSQL adapter has its own demo test
    process = demo("--tiny", "--quiet", "--dsn", "postgresql://nobody@127.0.0.1:1/none", "--dir", str(tmp_path))
    assert process.returncode == 1 and "--dsn was given" in process.stderr and "nothing was written" in process.stderr


def test_progress_bar_while_embedding(tmp_path):
    code, shown = run_with_terminal_stderr([sys.executable, "-m", "vecplug", "demo", "--tiny", "--dir",
                                            str(tmp_path)])
    assert code == 0, shown
    embedded = local_store_count() * len(corpus.DOCUMENTS)
    assert "embedding into" in shown and f"{embedded}/{embedded}" in shown


def demo_sh(venv: Path, *args: str) -> subprocess.CompletedProcess:
    """./scripts/demo.sh, unchanged, into a new virtual environment that sees this one's packages.

    A .pth file makes them visible, so pip installs vecplug and the plugin from
    the checkout (their wheels, built by the script's pip) without downloading
    torch or anything else again.
    """
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site_packages = next(venv.glob("lib/python*/site-packages"))
    here = [path for path in sys.path if path.endswith("site-packages")]
    (site_packages / "outer.pth").write_text("\n".join(here) + "\n")
    env = {**os.environ, "VECPLUG_VENV": str(venv)}
    return subprocess.run(["./scripts/demo.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow  # builds a virtual environment and installs the project
def test_readme_demo_command_sets_up_and_runs(tmp_path):
    """./scripts/demo.sh as the README gives it, in a new virtual environment (``demo_sh``)."""
    readme = (ROOT / "README.md").read_text()
    assert "$ ./scripts/demo.sh" in readme
    venv = tmp_path / "venv"
    process = demo_sh(venv, "--quiet")
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    assert all_right(local_store_count()) in process.stdout
    installed = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import vecplug, vecplug_minilm; print(vecplug.__file__, vecplug_minilm.__file__)"],
                               capture_output=True, text=True, timeout=60)
    assert installed.stdout.count(str(venv)) == 2, installed.stdout  # installed into the new environment


def demo_rows(conn) -> tuple[int, int]:
    """(rows, rows with a vector) of the demo's table."""
    return conn.execute("SELECT count(*), count(embedding) FROM vecplug_demo.docs").fetchone()


@pytest.mark.slow  # a server, PostgreSQL and the worker, with Chroma and Qdrant beside them
def test_demo_with_dsn_fills_postgres_through_a_vectorizer_and_the_worker(pg_cluster, fresh_db, tmp_path):
    """Its own server on a free port, plain SQL in, the worker's vectors out; the database left as found but
    for schema vecplug_demo (vecplug, which the demo installed, is removed again)."""
    process = demo("--tiny", "--quiet", "--dsn", pg_cluster.dsn(fresh_db), "--dir", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr
    out = process.stdout
    assert "served by vecplug serve at http://127.0.0.1:" in out and "(started for the demo)" in out
    assert "SELECT vecplug.create_vectorizer('vecplug_demo.docs', 'body');" in out
    assert "INSERT INTO vecplug_demo.docs (id, body) VALUES (1, 'The built-in" in out
    rows = len(corpus.DOCUMENTS)
    assert f"embedded {rows} queued rows: {rows}/{rows} rows have a vector, queue empty" in out
    assert f"ORDER BY embedding <=> vecplug.embed_query('{corpus.QUESTIONS[0][0]}') LIMIT 3;" in out
    assert out.count("Q: ") == len(corpus.QUESTIONS) and "PostgreSQL" in out.split("Q: ")[1]
    assert "vecplug pg worker --dsn DSN" in out  # how to do the same by hand
    with pg_cluster.connect(fresh_db) as conn:
        assert demo_rows(conn) == (rows, rows)
        assert conn.execute("SELECT to_regnamespace('vecplug')").fetchone()[0] is None
    again = demo("--tiny", "--quiet", "--dsn", pg_cluster.dsn(fresh_db), "--dir", str(tmp_path))
    assert again.returncode == 0, again.stderr  # the demo's schema is made afresh, not added to


@pytest.mark.slow  # the demo against a running server and an installed vecplug
def test_demo_with_server_url_uses_the_installation_and_embed_query_finds_a_document(pg_cluster, fresh_db,
                                                                                     vz_server, tmp_path):
    """vecplug installed for this server stays; the worker emptied the queue; a document's own text, asked with
    vecplug.embed_query, finds that document first (random weights: the structure, not meaning)."""
    from pg_vectorizer_helpers import install, queue_rows, status

    dsn = pg_cluster.dsn(fresh_db)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE SCHEMA vecplug; CREATE TABLE vecplug.settings (name text PRIMARY KEY, value text);"
                     "INSERT INTO vecplug.settings VALUES ('server_url', 'http://127.0.0.1:9')")
    refused = demo("--quiet", "--dsn", dsn, "--server-url", vz_server.url, "--dir", str(tmp_path))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "calls the server http://127.0.0.1:9" in refused.stderr and "--server-url http://127.0.0.1:9" in refused.stderr
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("DROP SCHEMA vecplug CASCADE")
    install(dsn, vz_server.url)

    process = demo("--quiet", "--dsn", dsn, "--server-url", vz_server.url, "--dir", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert f"schema vecplug was there, calling {vz_server.url}" in process.stdout
    rows = len(corpus.DOCUMENTS)
    with pg_cluster.connect(fresh_db) as conn:
        assert demo_rows(conn) == (rows, rows)
        assert queue_rows(conn) == []
        (state,) = status(conn).values()
        assert (state["pending"], state["failed"], state["embedded"]) == (0, 0, rows)
        for document in corpus.DOCUMENTS[:5]:
            found = conn.execute("SELECT id FROM vecplug_demo.docs ORDER BY embedding <=> vecplug.embed_query(%s) "
                                 "LIMIT 1", [document.text]).fetchone()[0]
            assert found == document.id, document.title


@pytest.mark.slow  # a virtual environment, a PostgreSQL cluster and a server: about 30 s
def test_demo_sh_postgres_starts_and_removes_a_throwaway_cluster(pg_cluster, tmp_path):
    """./scripts/demo.sh --postgres: its own cluster (pg_cluster only stands for "PostgreSQL is installed"),
    the vectorizer route through it, and nothing left behind."""
    def clusters() -> set:
        return set(Path(tempfile.gettempdir()).glob("vecplug-demo-pg.*"))

    before = clusters()
    process = demo_sh(tmp_path / "venv", "--postgres", "--tiny", "--quiet")
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    rows = len(corpus.DOCUMENTS)
    assert f"{rows}/{rows} rows have a vector, queue empty" in process.stdout
    assert "vecplug.embed_query(" in process.stdout
    assert process.stdout.rstrip().endswith("(the throwaway PostgreSQL goes now, with the demo's table)")
    assert clusters() == before


def test_demo_stores_embed_through_a_served_model_whose_name_is_not_here(tiny_model_dir, tmp_path):
    """A server names a local model by its own path (a container's /smoke-model): the demo's Chroma store
    must reach the model through the server's URL, not look that path up on this machine."""
    pytest.importorskip("chromadb")
    import shutil

    import vecplug
    from vecplug.testing import running_server
    from vecplug_chroma.demo import ChromaDemoStore

    elsewhere = tmp_path / "on-the-server-only"
    shutil.copytree(tiny_model_dir, elsewhere)
    with running_server(elsewhere) as server:
        shutil.rmtree(elsewhere)  # loaded: from here on the path exists only "on the server's machine"
        remote = vecplug.load_model(server.url)
        assert remote.name == str(elsewhere) and not elsewhere.exists()
        store = ChromaDemoStore(tmp_path / "stores", remote)
        try:
            store.add([1, 2], ["the kettle boils water", "a tree grows leaves"])
            assert [hit for hit, _ in store.search("the kettle boils water", 1)] == [1]
        finally:
            store.close()
