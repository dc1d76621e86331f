"""The PostgreSQL ``VectorStore`` (``--dsn --table``) on a real PostgreSQL, loaded the documented way.

A local synthetic corpus (four topics of words drawn from each topic's
vocabulary, a planted exact duplicate) goes into a vectorized table:
``vecplug.create_vectorizer`` in SQL, rows inserted, one worker run with
the tiny model in this process. The tiny random-weight model keeps texts
that share words close, which is all the topic checks need. Every score is
checked against numpy on the vectors the table holds. (The shared corpus
with MiniLM runs over PostgreSQL with the other stores in tests/stores/;
this file covers what only PostgreSQL has: rights, catalog names, key
types, the index, the vectorizer's queue.)
"""
from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_docs import assert_same_neighbours  # noqa: E402
from pg_vectorizer_helpers import install, one_torch_thread, queue_rows, vectors  # noqa: E402
from vecplug.stores import StoreNotFoundError, StoreSelection, UnknownIdsError, VectorStore  # noqa: E402

TOPICS = {
    "astronomy": "planet star galaxy telescope orbit comet nebula moon solar eclipse asteroid cosmic".split(),
    "cooking": "recipe oven flour butter garlic simmer sauce bake onion pepper skillet dough".split(),
    "finance": "stock bond market interest dividend portfolio inflation bank loan equity credit tax".split(),
    "football": "goal striker referee match league penalty keeper stadium midfield coach tackle score".split(),
}
PER_TOPIC = 15
DUPLICATE_OF, DUPLICATE = 3, 100  # row 100 repeats row 3's text


def corpus() -> tuple[dict, dict]:
    """({id: text}, {id: topic}): PER_TOPIC texts per topic (ids 0..59), plus the planted duplicate."""
    rng = random.Random(0)
    texts, topics = {}, {}
    for topic_number, (topic, words) in enumerate(TOPICS.items()):
        for index in range(PER_TOPIC):
            row_id = topic_number * PER_TOPIC + index
            texts[row_id] = " ".join(rng.sample(words, 8))
            topics[row_id] = topic
    texts[DUPLICATE], topics[DUPLICATE] = texts[DUPLICATE_OF], topics[DUPLICATE_OF]
    return texts, topics


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    with one_torch_thread():
        yield vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def store_db(pg_cluster, model):
    """Database ``pg_stores``: table ``docs`` (id, body, lang) with an async vectorizer, drained by a worker."""
    name = pg_cluster.create_database("pg_stores")
    dsn = pg_cluster.dsn(name)
    install(dsn, None)
    texts, _ = corpus()
    with pg_cluster.connect(name) as conn:
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text, lang text NOT NULL DEFAULT 'en')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', dimensions => %s)", [model.dimensions])
        conn.execute("INSERT INTO docs (id, body, lang) SELECT * FROM unnest(%s::int[], %s::text[], %s::text[])",
                     [list(texts), list(texts.values()), ["en" if i % 2 else "fr" for i in texts]])
    with one_torch_thread():
        assert vecplug_pgvector.Worker(dsn, model, show_progress=False).run(once=True).embedded == len(texts)
    yield name
    pg_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def open_store(dsn: str, table: str = "docs", **options):
    return vecplug.load_plugins().hook.vecplug_open_store(selection=StoreSelection(dsn=dsn, table=table, **options))


def stored(pg_cluster, name: str) -> dict:
    with pg_cluster.connect(name) as conn:
        return {key: value / np.linalg.norm(value) for key, value in vectors(conn).items()}


def test_the_hook_opens_the_vectorized_table_with_the_vectorizers_columns_and_model(pg_cluster, store_db, model):
    with open_store(pg_cluster.dsn(store_db)) as store:
        assert isinstance(store, VectorStore)
        assert store.description == "table public.docs"
        assert (store.columns.vector, store.columns.text, store.columns.id) == ("embedding", "body", "id")
        recorded = store.recorded_model()
        assert recorded["name"] == model.name and recorded["dimensions"] == model.dimensions
        vecplug.check_same_space(recorded, model.spec, where="the test table")  # the worker pinned this model
        assert store.count() == len(corpus()[0])
    from vecplug_pgvector.plugin import vecplug_open_store

    assert vecplug_open_store(StoreSelection(chroma="x", collection="c")) is None  # not PostgreSQL's


def test_nearest_finds_the_exact_text_first_with_numpys_cosine(pg_cluster, store_db, model):
    texts, _ = corpus()
    by_id = stored(pg_cluster, store_db)
    ids = sorted(by_id)
    matrix = np.stack([by_id[i] for i in ids]).astype(np.float64)
    with open_store(pg_cluster.dsn(store_db)) as store:
        for row_id in (7, 20, 44):
            hits = store.nearest(by_id[row_id], k=5)
            assert hits[0].id == row_id and hits[0].text == texts[row_id]
            expected = matrix @ by_id[row_id].astype(np.float64)
            for hit in hits:
                assert hit.score == pytest.approx(expected[ids.index(hit.id)], abs=1e-5)
            assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
            same_text = {DUPLICATE: DUPLICATE_OF}  # tied: either may come first, even at the cut
            assert_same_neighbours([(same_text.get(hit.id, hit.id), 1 - hit.score) for hit in hits],
                                   [(same_text.get(ids[i], ids[i]), 1 - expected[i])
                                    for i in np.argsort(-expected, kind="stable")[:5]])
        duplicate = store.nearest(by_id[DUPLICATE_OF], k=2, exclude=[DUPLICATE_OF])
        assert duplicate[0].id == DUPLICATE and duplicate[0].score == pytest.approx(1.0, abs=1e-5)
        filtered = store.nearest(by_id[7], k=60, where="lang = 'en'")
        assert len(filtered) == 30 and all(hit.id % 2 for hit in filtered)  # the 30 odd ids are 'en', 100 is not
        query = model.embed_queries([texts[20]])[0]
        assert store.nearest(query, k=1)[0].id == 20


def test_nearest_is_served_by_the_vectorizers_hnsw_index(pg_cluster, store_db):
    """On 61 rows PostgreSQL rightly prefers a scan; with scans ruled out, nearest's query is an index scan."""
    with open_store(pg_cluster.dsn(store_db)) as store:
        store.conn.execute("SET enable_seqscan = off")
        query, arguments = store._nearest_query(store.vectors([1])[1], 50, None)
        plan = "\n".join(row[0] for row in store.conn.execute(b"EXPLAIN " + query.as_bytes(store.conn), arguments))
        assert "Index Scan using docs_embedding" in plan and "Order By: (embedding <=> " in plan, plan
        store.conn.execute("SET enable_seqscan = on")
        store.nearest(store.vectors([1])[1], 50)
        assert store.conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"  # raised for the query only
    # the ef_search a query ran with: at least 100, or the limit, or the session's when higher
    with open_store(pg_cluster.dsn(store_db)) as store, store.conn.transaction(), store.conn.cursor() as cursor:
        for session, limit, expected in (("40", 11, "100"), ("40", 150, "150"), ("400", 11, "400")):
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, false)", [session])
            store._index_settings(cursor, limit, filtered=False)
            assert cursor.execute("SHOW hnsw.ef_search").fetchone()[0] == expected


def test_chunked_vectorizers_are_refused_with_what_to_use_instead(pg_cluster, store_db):
    with pg_cluster.connect(store_db) as conn:
        conn.execute("CREATE TABLE long_docs (id integer PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('long_docs', 'body', chunk_tokens => 64, dimensions => 64)")
    try:
        for table in ("long_docs", "long_docs_chunks"):
            with pytest.raises(vecplug.InvalidSettingError, match=r"chunked vectorizer \d+ .*one vector per row.*"
                               r"long_docs_chunks_view"):
                open_store(pg_cluster.dsn(store_db), table)
    finally:
        with pg_cluster.connect(store_db) as conn:
            conn.execute("SELECT vecplug.drop_vectorizer(id) FROM vecplug.vectorizer_columns "
                         "WHERE table_name = 'long_docs'; DROP TABLE long_docs CASCADE")


def test_recommend_excludes_the_given_ids_and_prefers_the_positives_topic(pg_cluster, store_db):
    _, topics = corpus()
    positive, negative = [15, 16, 17], [30, 31]  # cooking, finance
    rows = [hit.to_dict() for hit in
            vecplug_pgvector.recommend(pg_cluster.dsn(store_db), "docs", positive=positive, negative=negative, k=10)]
    assert [set(row) for row in rows] == [{"id", "score", "text"}] * 10
    assert not {row["id"] for row in rows} & {*positive, *negative}
    assert all(topics[row["id"]] == "cooking" for row in rows)
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    by_id = stored(pg_cluster, store_db)
    query = vecplug.analysis.recommendation_vector([by_id[i] for i in positive], [by_id[i] for i in negative])
    assert rows[0]["score"] == pytest.approx(float(by_id[rows[0]["id"]] @ query), abs=1e-5)
    with pg_cluster.connect(store_db) as conn:  # a caller's connection, and string ids from a command line
        again = vecplug_pgvector.recommend(conn, ("public", "docs"), positive=["15", "16", "17"], negative=["30", "31"])
    assert [hit.id for hit in again] == [row["id"] for row in rows]


def test_items_stream_every_row_once_in_batches(pg_cluster, store_db):
    texts, _ = corpus()
    by_id = stored(pg_cluster, store_db)
    with open_store(pg_cluster.dsn(store_db)) as store:
        batches = list(store.items(batch_size=16))
        assert [len(batch) for batch in batches] == [16, 16, 16, 13]
        items = [item for batch in batches for item in batch]
        assert sorted(item.id for item in items) == sorted(texts)
        for item in items:
            assert item.text == texts[item.id] and item.vector.dtype == np.float32
            np.testing.assert_array_equal(item.vector, by_id[item.id].astype(np.float32))
        # dedup asks nearest() between batches of the same stream
        found = [(item.id, store.nearest(item.vector, 2, exclude=[item.id])[0]) for batch in store.items(40)
                 for item in batch]
        assert {(row_id, hit.id) for row_id, hit in found if hit.score > 0.9999} == {(3, 100), (100, 3)}


def test_write_labels_creates_an_int_column_and_queues_nothing(pg_cluster, store_db):
    texts, topics = corpus()
    names = sorted(TOPICS)
    with open_store(pg_cluster.dsn(store_db)) as store:
        written = store.write_labels("topic_label", ((row_id, names.index(topics[row_id])) for row_id in texts))
        assert written == len(texts)
        assert store.write_labels("topic_label", iter([(5, -1)])) == 1  # an existing column: updated in place
        with pytest.raises(UnknownIdsError, match=r"id\(s\) 999"):
            store.write_labels("topic_label", iter([(0, 7), (999, 1)]))
        with pytest.raises(vecplug.InvalidSettingError, match="'body' is the store's text column"):
            store.write_labels("body", iter([(0, 1)]))
        with pytest.raises(vecplug.InvalidSettingError, match="type text, not an integer"):
            store.write_labels("lang", iter([(0, 1)]))
    with pg_cluster.connect(store_db) as conn:
        assert conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'docs' "
                            "AND column_name = 'topic_label'").fetchone()[0] == "integer"
        labels = dict(conn.execute("SELECT id, topic_label FROM docs").fetchall())
        assert queue_rows(conn) == []
        assert conn.execute("SELECT count(*) FROM docs WHERE embedding IS NULL").fetchone()[0] == 0
    assert labels == {**{row_id: names.index(topics[row_id]) for row_id in texts}, 5: -1}  # row 0 kept its label


def test_unknown_ids_missing_tables_and_wrong_options_are_one_line_errors(pg_cluster, store_db):
    dsn = pg_cluster.dsn(store_db)
    with pytest.raises(StoreNotFoundError, match="no table 'nope' in database 'pg_stores'"):
        open_store(dsn, "nope")
    with pytest.raises(vecplug.InvalidSettingError, match="add --table"):
        vecplug.load_plugins().hook.vecplug_open_store(selection=StoreSelection(dsn=dsn))
    with pytest.raises(vecplug.InvalidSettingError, match="no column 'text' \\(--text-column\\)"):
        open_store(dsn, text_column="text")
    with pytest.raises(vecplug.InvalidSettingError, match="no vector column 'body'; its vector columns: embedding"):
        open_store(dsn, column="body")
    with pytest.raises(vecplug.InvalidSettingError, match="does not identify a row alone"):
        open_store(dsn, id_column="lang")
    with open_store(dsn) as store:
        with pytest.raises(UnknownIdsError) as raised:
            store.recommend([1, 12345], [-4], k=3)
        assert "12345" in str(raised.value) and "-4" in str(raised.value) and "\n" not in str(raised.value)
        with pytest.raises(UnknownIdsError, match="its ids are integers"):
            store.vectors(["abc"])


def test_any_table_with_a_vector_column_text_keys_and_another_schema(pg_cluster, fresh_db):
    """No vectorizer: the defaults (embedding, body, primary key); text keys round-trip; search_path is not used."""
    from pgvector.psycopg import register_vector

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(30, 8)).astype(np.float32)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE EXTENSION vector")
        register_vector(conn)
        conn.execute("CREATE SCHEMA other; CREATE TABLE other.notes (key text PRIMARY KEY, body text, "
                     "embedding vector(8)); CREATE INDEX ON other.notes USING hnsw (embedding vector_l2_ops)")
        with conn.cursor() as cursor, cursor.copy("COPY other.notes FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "vector"])
            for index, row in enumerate(rows):
                copy.write_row((f"n-{index}", f"note {index}", row))
    dsn = pg_cluster.dsn(fresh_db)
    with open_store(dsn, "other.notes") as store:
        assert store.recorded_model() is None
        unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        hits = store.nearest(rows[4], k=3)
        assert hits[0].id == "n-4" and hits[0].text == "note 4"
        assert [hit.score for hit in hits] == pytest.approx(sorted(unit @ unit[4], reverse=True)[:3], abs=1e-5)
        assert store.vectors(["n-4"])["n-4"] == pytest.approx(unit[4], abs=1e-7)
        assert store.write_labels("cluster", iter([("n-1", 2), ("n-2", 0)])) == 2
    with pg_cluster.connect(fresh_db) as conn:
        assert conn.execute("SELECT cluster FROM other.notes WHERE key = 'n-1'").fetchone()[0] == 2


def test_a_role_without_rights_cannot_use_the_store_on_a_table(pg_cluster, store_db):
    """Role ``reader``, no superuser: each thing it lacks a right for is PostgreSQL's refusal, in one line, and
    nothing changes; its SELECT on docs is all the store gives it (no SECURITY DEFINER anywhere)."""
    dsn = pg_cluster.dsn(store_db, user="reader")
    with pytest.raises(vecplug_pgvector.StorePermissionError, match="permission denied for table docs") as raised:
        with open_store(dsn) as store:
            store.count()
    assert "\n" not in str(raised.value)
    with pg_cluster.connect(store_db) as conn:
        conn.execute("CREATE TABLE secrets (id integer); INSERT INTO secrets VALUES (1)")
        conn.execute("ALTER TABLE docs ADD COLUMN reviewed integer; GRANT SELECT ON docs TO reader")
    try:
        with open_store(dsn) as store:
            assert store.count() == len(corpus()[0])
            with pytest.raises(vecplug_pgvector.StorePermissionError, match="may not add column 'stolen'"):
                store.write_labels("stolen", iter([(1, 1)]))
            with pytest.raises(vecplug_pgvector.StorePermissionError, match="permission denied for table docs"):
                store.write_labels("reviewed", iter([(1, 1)]))
            with pytest.raises(vecplug_pgvector.StorePermissionError, match="permission denied for table secrets"):
                store.nearest(store.vectors([1])[1], 3, where="id IN (SELECT id FROM secrets)")
    finally:
        with pg_cluster.connect(store_db) as conn:
            conn.execute("REVOKE SELECT ON docs FROM reader; DROP TABLE secrets")
    with pg_cluster.connect(store_db) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'docs' "
                            "AND column_name = 'stolen'").fetchone()[0] == 0
        assert conn.execute("SELECT count(reviewed) FROM docs").fetchone()[0] == 0
        conn.execute("ALTER TABLE docs DROP COLUMN reviewed")


def vecplug_command(*args: str) -> subprocess.CompletedProcess:
    """The real command in its own process (exit statuses as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_the_cluster_command_writes_an_int_column_and_queues_nothing(pg_cluster, store_db):
    """`vecplug cluster --write` as a user runs it: labels in a new integer column, equal to its JSON lines."""
    from sklearn.metrics import adjusted_rand_score

    process = vecplug_command("cluster", "--dsn", pg_cluster.dsn(store_db), "--table", "docs", "-k", "4",
                              "--write", "cli_topic", "--json")
    assert process.returncode == 0, process.stderr[-3000:]
    found = {line["id"]: line["cluster"] for line in map(json.loads, process.stdout.splitlines())}
    _, topics = corpus()
    assert adjusted_rand_score([topics[i] for i in sorted(topics)], [found[i] for i in sorted(topics)]) > 0.9
    with pg_cluster.connect(store_db) as conn:
        assert dict(conn.execute("SELECT id, cli_topic FROM docs").fetchall()) == found
        assert conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'docs' "
                            "AND column_name = 'cli_topic'").fetchone()[0] == "integer"
        assert queue_rows(conn) == []


def test_without_dsn_the_commands_read_the_pg_environment_variables(pg_cluster, store_db):
    """`--table` alone: libpq's PG* variables name the database, as for every `vecplug pg` command."""
    import os

    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(pg_cluster.dsn(store_db))
    environment = {**os.environ, "PGHOST": parts["host"], "PGPORT": str(parts["port"]),
                   "PGDATABASE": parts["dbname"], "PGUSER": parts["user"]}
    process = subprocess.run([sys.executable, "-m", "vecplug", "recommend", "--table", "docs", "--positive", "1",
                              "-k", "2", "--json"], capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL, env=environment)
    assert process.returncode == 0, process.stderr[-3000:]
    hits = [json.loads(line) for line in process.stdout.splitlines()]
    assert len(hits) == 2 and 1 not in [hit["id"] for hit in hits]


@pytest.mark.parametrize("args, message", [
    (["recommend", "--positive", "9999", "--table", "docs"], "no row with a vector for id(s) 9999"),
    (["dedup", "--table", "nope"], "no table 'nope'"),
    (["search", "x", "--table", "docs", "--column", "body"], "no vector column 'body'"),
])
def test_wrong_ids_tables_and_columns_are_one_line_and_exit_2(pg_cluster, store_db, args, message):
    process = vecplug_command(*args, "--dsn", pg_cluster.dsn(store_db))
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1 and message in lines[0], process.stderr


@pytest.mark.slow  # three child processes (items, dedup, cluster): 5 s on 2 quiet cores, 20 s on busy ones
def test_the_benchmark_script_runs_and_checks_its_answers(pg_cluster, tmp_path):
    """scripts/bench_stores_pg.py on 500 rows: it loads, streams every row (it checks), and times both commands."""
    import os
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_stores_pg.py"
    process = subprocess.run([sys.executable, str(script), "--rows", "500", "--dims", "64", "--clusters", "4",
                              "--dsn", pg_cluster.dsn()], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.splitlines()[-1])["results"][0]
    assert result["rows"] == 500 and result["items"]["s"] > 0 and result["items"]["peak_rss_mb"] > 0
    assert result["dedup"]["recall"] == 1.0 and result["dedup"]["pairs"] == result["dedup"]["planted"] > 0
    assert result["cluster"]["ari"] > 0.9
    assert result["dedup"]["command"] == "vecplug dedup --dsn DSN --table bench_500 --threshold 0.95 --json"
