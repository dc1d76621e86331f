"""``vecplug search/recommend/cluster/dedup --dsn --table`` end to end: the shared corpus, MiniLM, real commands.

The corpus (tests/store_corpus.py: four topics, planted exact and near
copies, a question) goes into PostgreSQL the documented way: plain INSERTs
into a table with a vectorizer, embedded by one worker run with the MiniLM
plugin (real weights, offline). Each command runs as a user runs it
(``python -m vecplug``), so the exit statuses are the real ones.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("vecplug_minilm")  # plugins/vecplug-minilm; ./scripts/test.sh installs it
pytest.importorskip("sklearn")  # the cluster extra

import store_corpus  # noqa: E402
import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_vectorizer_helpers import install, one_torch_thread, queue_rows, server_env  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402


@pytest.fixture(scope="module")
def corpus_dsn(pg_cluster):
    """Database ``pg_store_commands``: table ``corpus`` with a vectorizer, every row embedded by MiniLM."""
    name = pg_cluster.create_database("pg_store_commands")
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


def vecplug_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=300,
                          env=server_env())


def json_lines(process: subprocess.CompletedProcess) -> list[dict]:
    assert process.returncode == 0, process.stderr[-3000:]
    return [json.loads(line) for line in process.stdout.splitlines()]


def test_search_answers_the_question_with_the_stored_model(corpus_dsn):
    """No -m: the model the vectorizer recorded (MiniLM) embeds the question; scores are cosines, best first."""
    hits = json_lines(vecplug_command("search", store_corpus.QUESTION, "--dsn", corpus_dsn, "--table", "corpus",
                                      "-k", "3", "--json", "--where", "topic <> 'cooking'"))
    assert (hits[0]["id"], hits[0]["text"]) == (store_corpus.id_of(store_corpus.ANSWER), store_corpus.ANSWER)
    assert 0.3 < hits[0]["score"] <= 1 and [hit["score"] for hit in hits] == sorted(
        (hit["score"] for hit in hits), reverse=True)


def test_recommend_stays_in_the_positives_topic(corpus_dsn):
    labels = store_corpus.topic_labels()
    football = [store_corpus.id_of(text) for text in store_corpus.TOPICS["football"][:3]]
    cooking = [store_corpus.id_of(text) for text in store_corpus.TOPICS["cooking"][:2]]
    hits = json_lines(vecplug_command("recommend", "--dsn", corpus_dsn, "--table", "corpus", "-k", "5", "--json",
                                      *[f"--positive={i}" for i in football], *[f"--negative={i}" for i in cooking]))
    assert len(hits) == 5 and not {hit["id"] for hit in hits} & {*football, *cooking}
    assert [labels[hit["id"]] for hit in hits] == ["football"] * 5


def test_dedup_finds_exactly_the_planted_pairs(corpus_dsn):
    pairs = json_lines(vecplug_command("dedup", "--dsn", corpus_dsn, "--table", "corpus", "--threshold", "0.9",
                                       "--json"))
    assert {(pair["a"], pair["b"]) for pair in pairs} == store_corpus.planted_pairs()
    assert all(pair["a"] < pair["b"] and pair["score"] >= 0.9 for pair in pairs)


def test_cluster_recovers_the_topics_and_writes_an_int_column(pg_cluster, corpus_dsn):
    labels = json_lines(vecplug_command("cluster", "--dsn", corpus_dsn, "--table", "corpus", "-k", "4", "--json",
                                        "--write", "topic_cluster"))
    topics = store_corpus.topic_labels()
    found = {line["id"]: line["cluster"] for line in labels}
    assert set(found) == set(topics)
    assert adjusted_rand_score([topics[i] for i in sorted(topics)], [found[i] for i in sorted(topics)]) > 0.9
    with psycopg.connect(corpus_dsn, autocommit=True) as conn:
        assert dict(conn.execute("SELECT id, topic_cluster FROM corpus").fetchall()) == found
        assert queue_rows(conn) == []  # the labels re-queued nothing
    table = vecplug_command("cluster", "--dsn", corpus_dsn, "--table", "corpus", "-k", "4")
    assert table.returncode == 0 and table.stdout.count("top terms:") == 4, table.stderr


@pytest.mark.parametrize("args, message", [
    (["recommend", "--positive", "9999", "--table", "corpus"], "no row with a vector for id(s) 9999"),
    (["dedup", "--table", "nope"], "no table 'nope'"),
    (["search", "x", "--table", "corpus", "--column", "body"], "no vector column 'body'"),
])
def test_wrong_ids_tables_and_columns_are_one_line_and_exit_2(corpus_dsn, args, message):
    process = vecplug_command(*args, "--dsn", corpus_dsn)
    assert process.returncode == 2 and message in process.stderr, process.stderr
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr
