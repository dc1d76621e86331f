"""Meaning, end to end in PostgreSQL: real MiniLM weights behind `vecplug serve`, a vectorizer, the worker, SQL.

The random-weight test models check mechanics; this checks that what the
user gets answers questions. A question about opening files must find the
paragraph on ``open()`` among the demo corpus' distractors, through
``vecplug.create_vectorizer``, ``vecplug pg worker``, ``vecplug.embed_query``
in SQL and ``vecplug_pgvector.search`` from Python.
"""
from __future__ import annotations

import pytest

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("vecplug_minilm")  # plugins/vecplug-minilm; ./scripts/test.sh installs it

import vecplug_pgvector  # noqa: E402
from pg_vectorizer_helpers import install, server_env  # noqa: E402
from vecplug.demo import corpus  # noqa: E402
from vecplug.testing import running_server  # noqa: E402

QUESTION = "How do I open a file and read what is in it?"


def test_a_question_finds_its_paragraph_through_a_vectorizer(pg_cluster, fresh_db):
    dsn = pg_cluster.dsn(fresh_db)
    with running_server("minilm", env=server_env()) as server:
        install(dsn, server.url)
        with pg_cluster.connect(fresh_db) as conn:
            conn.execute("CREATE TABLE paragraphs (id integer PRIMARY KEY, title text, body text)")
            conn.execute("SELECT vecplug.create_vectorizer('paragraphs', 'body')")
            conn.execute("INSERT INTO paragraphs SELECT * FROM unnest(%s::int[], %s::text[], %s::text[])",
                         [[d.id for d in corpus.DOCUMENTS], [d.title for d in corpus.DOCUMENTS],
                          [d.text for d in corpus.DOCUMENTS]])
            report = vecplug_pgvector.Worker(dsn, server_url=server.url).run(once=True)
            assert report.exit_code == 0 and report.embedded == len(corpus.DOCUMENTS)
            in_sql = conn.execute("SELECT title FROM paragraphs ORDER BY embedding <=> vecplug.embed_query(%s) "
                                  "LIMIT 3", [QUESTION]).fetchall()
            from_python = vecplug_pgvector.search(conn, "paragraphs", QUESTION, k=3, server_url=server.url)
    assert in_sql[0] == ("open()",), in_sql
    assert from_python[0]["title"] == "open()" and from_python[0]["body"] == corpus.by_id(1).text
