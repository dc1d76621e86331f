"""The write path and the worker's batches (issue 21): a statement queues its rows in one row, the worker
spreads it and embeds each row once, and batches are sized by tokens under a row cap."""
from __future__ import annotations

import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_vectorizer_helpers import install, one_torch_thread, queue_rows, server_metric, status  # noqa: E402


@pytest.fixture
def dsn(pg_cluster, fresh_db, vz_server):
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    return pg_cluster.dsn(fresh_db)


def statements(conn) -> list[int]:
    """How many keys each queued statement holds, oldest first."""
    return [row[0] for row in conn.execute("SELECT array_length(keys, 1) FROM vecplug.queued_statements ORDER BY id")]


def test_one_queue_insert_per_statement_with_exactly_the_rows_that_need_a_vector(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute('CREATE TABLE notes (tenant text, "When" date, body text, PRIMARY KEY (tenant, "When"))')
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        notes = conn.execute("SELECT vecplug.create_vectorizer('notes', 'body')").fetchone()[0]
        conn.execute("INSERT INTO docs SELECT g, CASE WHEN g % 10 <> 0 THEN 'text ' || g END "
                     "FROM generate_series(1, 300) g")  # every tenth without text
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for key in range(301, 351):
                copy.write_row((key, f"copied {key}"))
        conn.execute("INSERT INTO notes VALUES ('a b', '2024-01-02', 'x'), ('it''s', '2024-03-04', 'y')")
        assert statements(conn) == [270, 50, 2]
        assert conn.execute("SELECT count(*) FROM vecplug.queue").fetchone()[0] == 0
        expected = [[str(g)] for g in range(1, 351) if g > 300 or g % 10]
        assert [key for vectorizer, key, _ in queue_rows(conn) if vectorizer != notes] == expected
        assert [key for _, key, _ in queue_rows(conn, notes)] == [["a b", "2024-01-02"], ["it's", "2024-03-04"]]

        conn.execute("DELETE FROM vecplug.queued_statements")
        conn.execute("UPDATE docs SET embedding = array_fill(0.5, ARRAY[64])::vector")  # as a worker would
        conn.execute("UPDATE docs SET body = body || '!' WHERE id <= 20")  # 18 with text
        conn.execute("UPDATE docs SET body = body WHERE id <= 20")  # the same texts: nothing
        conn.execute("UPDATE docs SET body = 'given', embedding = array_fill(0.25, ARRAY[64])::vector "
                     "WHERE id = 21")  # a vector given with the text: taken at its word
        assert statements(conn) == [18]
        assert sorted(int(key[0]) for _, key, _ in queue_rows(conn)) == [g for g in range(1, 21) if g % 10]
        assert conn.execute("SELECT pending FROM vecplug.status WHERE vectorizer = 'public.docs.embedding'"
                            ).fetchone()[0] == 18


def test_deleted_rows_leave_the_statements_no_worker_spread_yet(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs SELECT g, 'text ' || g FROM generate_series(1, 10) g")
        conn.execute("INSERT INTO docs SELECT g, 'text ' || g FROM generate_series(11, 12) g")
        conn.execute("DELETE FROM docs WHERE id IN (3, 4, 11, 12)")  # the second statement empties: it goes
        assert statements(conn) == [8]
        assert [key for _, key, _ in queue_rows(conn)] == [[str(g)] for g in (1, 2, 5, 6, 7, 8, 9, 10)]
        conn.execute("TRUNCATE docs")
        assert queue_rows(conn) == [] and statements(conn) == []


def test_the_worker_spreads_statements_and_embeds_each_row_once(dsn, vz_server):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs SELECT g, 'text number ' || g FROM generate_series(1, 150) g")
        conn.execute("UPDATE docs SET body = 'changed ' || id WHERE id <= 30")  # queued twice: embedded once
        conn.execute("INSERT INTO docs SELECT g, 'more ' || g FROM generate_series(151, 200) g")
    before = server_metric(vz_server.url)
    report = vecplug_pgvector.Worker(dsn, server_url=vz_server.url, batch_size=40, show_progress=False).run(once=True)
    assert report.embedded == 200 and report.exit_code == 0, str(report)
    assert server_metric(vz_server.url) - before == 200
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM docs WHERE embedding IS NULL").fetchone()[0] == 0
        assert queue_rows(conn) == [] and statements(conn) == []
        assert status(conn)["public.docs.embedding"]["pending"] == 0


@pytest.fixture(scope="module")
def local_model(tiny_model_dir):
    with one_torch_thread():
        yield vecplug.load_model(str(tiny_model_dir), dtype="float32")


def batch_sizes(conn) -> list[int]:
    """Rows each worker batch embedded (vecplug.activity: a row per batch, not folded within a minute)."""
    return [row[0] for row in conn.execute("SELECT embedded FROM vecplug.activity WHERE embedded > 0 ORDER BY at")]


def test_batches_are_sized_by_tokens_under_the_row_cap_and_lose_nothing(dsn, local_model):
    short = {key: f"short text {key}" for key in range(1, 121)}
    long = {key: " ".join(f"word{key}x{index}" for index in range(60)) for key in range(121, 141)}
    counts = dict(zip(long, local_model.token_counts(list(long.values()), "document")))
    assert min(counts.values()) > 100  # each long text alone is over a quarter of the budget below
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        texts = {**short, **long}
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])",
                     [list(texts), list(texts.values())])
    with one_torch_thread():
        report = vecplug_pgvector.Worker(dsn, local_model, batch_size=25, batch_tokens=400,
                                         show_progress=False).run(once=True)
    assert report.embedded == 140 and report.exit_code == 0, str(report)
    with psycopg.connect(dsn, autocommit=True) as conn:
        sizes = batch_sizes(conn)
        assert conn.execute("SELECT count(*) FROM docs WHERE embedding IS NULL").fetchone()[0] == 0
        assert queue_rows(conn) == []
    assert sum(sizes) == 140 and max(sizes) <= 25, sizes  # the cap holds
    assert sizes[0] == 25  # short texts: the cap, not the budget, ends a batch
    assert max(sizes[-4:]) <= 3 and len(sizes) >= 5 + 20 // 3, sizes  # long texts: a budget's worth each


def test_a_text_over_the_budget_is_a_batch_of_its_own(dsn, local_model):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs VALUES (1, repeat('long words here ', 100)), (2, 'short'), (3, 'short too')")
    with one_torch_thread():
        report = vecplug_pgvector.Worker(dsn, local_model, batch_tokens=10, show_progress=False).run(once=True)
    assert report.embedded == 3 and report.exit_code == 0, str(report)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert batch_sizes(conn)[0] == 1
        assert conn.execute("SELECT count(*) FROM docs WHERE embedding IS NULL").fetchone()[0] == 0


def test_batch_tokens_must_be_positive():
    with pytest.raises(ValueError, match="batch_tokens"):
        vecplug_pgvector.Worker("dbname=x", batch_tokens=0)
