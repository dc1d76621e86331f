"""Chunked vectorizers on a real PostgreSQL: passages of long texts in a destination table (issue 21).

The reference is the Python API: ``model.embed_chunks`` of each row's text
with the tiny model in float32 (spans, chunk texts, vectors). The worker runs
in this process with that model, so each test costs a database and seconds.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_vectorizer_helpers import install, one_torch_thread, queue_rows, status  # noqa: E402

CHUNK_TOKENS = 128
# 20,000+ tokens: a long generated text of numbered sentences, paragraphs, and multi-byte characters
LONG = "\n\n".join(" ".join(f"Sentence {p}.{s} tells of café, naïve Zoë, 東京 and ünïcödé {p * s}." for s in range(12))
                   for p in range(180))
MULTIBYTE = "Grüße aus Köln 🎉 — 日本語のテキストも、句読点と一緒に。" * 40
NEWLINES = "\n\n\n\n"


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    with one_torch_thread():
        yield vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture
def db(pg_cluster, fresh_db, vz_server):
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    return fresh_db


def drain(pg_cluster, db, model, **options):
    with one_torch_thread():
        report = vecplug_pgvector.Worker(pg_cluster.dsn(db), model=model, show_progress=False, **options).run(once=True)
    return report


def chunks_of(conn, table="docs_chunks", key="id") -> dict:
    """{key: [(chunk_index, start, end, chunk, vector), ...]} in chunk order."""
    from pgvector.psycopg import register_vector

    register_vector(conn)
    found: dict = {}
    for row in conn.execute(f"SELECT {key}, chunk_index, chunk_start, chunk_end, chunk, embedding FROM {table} "
                            f"ORDER BY {key}, chunk_index"):
        found.setdefault(row[0], []).append((row[1], row[2], row[3], row[4], np.asarray(row[5].to_numpy())))
    return found


def assert_chunks_as(found: list, text: str, expected, min_cosine: float = 0.9999) -> None:
    assert [(start, end) for _, start, end, _, _ in found] == [tuple(span) for span in expected.spans]
    assert [index for index, *_ in found] == list(range(len(expected.spans)))
    assert [chunk for _, _, _, chunk, _ in found] == [text[start:end] for start, end in expected.spans]
    if found:
        got = np.stack([vector for *_, vector in found])
        cosines = (got * expected.vectors).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected.vectors, axis=1)
        assert cosines.min() >= min_cosine


def test_create_makes_the_destination_its_view_and_index_and_leaves_the_source_alone(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)")
        vectorizer_id = conn.execute(
            "SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 128)").fetchone()[0]
        columns = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                               "WHERE attrelid = 'docs_chunks'::regclass AND attnum > 0 ORDER BY attnum").fetchall()
        assert columns == [("id", "bigint"), ("chunk_index", "integer"), ("chunk_start", "integer"),
                           ("chunk_end", "integer"), ("chunk", "text"), ("embedding", "vector(64)")]
        assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'docs'::regclass "
                            "AND attname = 'embedding'").fetchone()[0] == 0  # no vector column in the source
        definitions = [row[0] for row in conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'docs_chunks'::regclass ORDER BY contype")]
        assert definitions == ["FOREIGN KEY (id) REFERENCES docs(id) ON UPDATE CASCADE ON DELETE CASCADE",
                               "PRIMARY KEY (id, chunk_index)"]
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'docs_chunks' "
                             "AND indexname <> 'docs_chunks_pkey'").fetchone()[0]
        assert "USING hnsw (embedding vector_cosine_ops)" in index
        view = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'docs_chunks_view'::regclass").fetchone()[0]
        assert view == ["security_invoker=true"]
        view_columns = [row[0] for row in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = "
                                                       "'docs_chunks_view'::regclass ORDER BY attnum")]
        assert view_columns == ["id", "title", "body", "chunk_index", "chunk_start", "chunk_end", "chunk", "embedding"]
        row = status(conn)["public.docs_chunks.embedding"]
        assert (row["id"], row["text_column"], row["pending"]) == (vectorizer_id, "body", 0)
        recorded = conn.execute("SELECT table_oid::regclass::text, column_name, model->>'dimensions' "
                                "FROM vecplug.embedding_columns").fetchall()
        assert recorded == [("docs_chunks", "embedding", "64")]
        vecplug_pgvector.search(conn, "docs_chunks", "anything", k=1, model=model)  # search() takes the destination


def test_worker_writes_every_rows_chunks_as_embed_chunks_gives_them(pg_cluster, db, model):
    texts = {1: LONG, 2: MULTIBYTE, 3: NEWLINES, 4: "A short text.", 5: ""}
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
        conn.execute("INSERT INTO docs VALUES (6, NULL)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 128, chunk_overlap => 16)")
        assert sorted(key for _, key, _ in queue_rows(conn)) == [[str(k)] for k in texts]  # NULL text: nothing
    report = drain(pg_cluster, db, model)
    assert report.exit_code == 0 and report.embedded == 5, str(report)
    with one_torch_thread():
        expected = dict(zip(texts, model.embed_chunks(list(texts.values()), chunk_tokens=128, overlap_tokens=16)))
    assert len(expected[1].spans) * (128 - 16) > 20_000  # the long text has 20,000+ tokens
    with pg_cluster.connect(db) as conn:
        found = chunks_of(conn)
        for key, text in texts.items():
            assert_chunks_as(found.get(key, []), text, expected[key])
        assert 3 not in found and 5 not in found  # newlines only, empty: no chunks
        # offsets are PostgreSQL's character positions too (multi-byte characters count one)
        assert conn.execute("SELECT count(*) FROM docs_chunks c JOIN docs d USING (id) "
                            "WHERE substr(d.body, c.chunk_start + 1, c.chunk_end - c.chunk_start) <> c.chunk"
                            ).fetchone()[0] == 0
        row = status(conn)["public.docs_chunks.embedding"]
        assert (row["pending"], row["failed"], row["embedded"]) == (0, 0, 5)  # source rows, not chunks


def test_a_new_text_replaces_all_chunks_deletes_cascade_other_updates_cost_nothing(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, lang text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 32)")
        conn.execute("INSERT INTO docs VALUES (1, %s, 'en'), (2, %s, 'en'), (3, 'three', 'en')", [LONG[:3000], LONG[:900]])
    drain(pg_cluster, db, model)
    with pg_cluster.connect(db) as conn:
        before = chunks_of(conn)
        assert len(before[1]) > len(before[2]) > 1
        conn.execute("UPDATE docs SET lang = 'fr'")  # not the text: nothing queued
        conn.execute("UPDATE docs SET body = body WHERE id = 1")  # the same text: nothing
        assert queue_rows(conn) == []
        conn.execute("UPDATE docs SET body = 'Now it is short.' WHERE id = 1")
        conn.execute("UPDATE docs SET body = NULL WHERE id = 2")  # no text: its chunks go
        conn.execute("DELETE FROM docs WHERE id = 3")  # its chunks go at once (the foreign key)
        assert 3 not in chunks_of(conn)
        conn.execute("UPDATE docs SET id = 10 WHERE id = 1")  # a new key: the chunks follow it
    drain(pg_cluster, db, model)
    with one_torch_thread():
        expected = model.embed_chunks(["Now it is short."], chunk_tokens=32)[0]
    with pg_cluster.connect(db) as conn:
        after = chunks_of(conn)
        assert set(after) == {10}
        assert_chunks_as(after[10], "Now it is short.", expected)  # one chunk: no stale one of the long text
        assert queue_rows(conn) == []


def test_composite_keys(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute('CREATE TABLE notes (tenant text, "When" timestamptz, body text, PRIMARY KEY (tenant, "When"))')
        conn.execute("INSERT INTO notes VALUES ('a b', '2024-01-02 03:04:05.678+00', %s), "
                     "('it''s', '2024-01-02 03:04:05+00', 'short')", [MULTIBYTE])
        conn.execute("SELECT vecplug.create_vectorizer('notes', 'body', chunk_tokens => 64, destination => 'note_passages')")
    drain(pg_cluster, db, model)
    with pg_cluster.connect(db) as conn:
        rows = conn.execute('SELECT tenant, count(*) FROM note_passages GROUP BY tenant ORDER BY tenant').fetchall()
        assert rows[0][0] == "a b" and rows[0][1] > 1 and rows[1] == ("it's", 1)
        conn.execute("DELETE FROM notes WHERE tenant = 'a b'")
        assert conn.execute("SELECT count(*) FROM note_passages WHERE tenant = 'a b'").fetchone()[0] == 0
        assert conn.execute('SELECT count(*) FROM note_passages_view').fetchone()[0] == 1


def test_best_chunk_per_document(pg_cluster, db, model):
    """The README's query: DISTINCT ON over the destination, nearest chunk first."""
    texts = {1: "Cats purr.\n\nThe ocean is deep and blue and full of fish.",
             2: "Bread needs flour.\n\nSailing the sea needs wind.", 3: "Nothing at all about water."}
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 8)")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
    drain(pg_cluster, db, model)
    question = "the sea"
    with pg_cluster.connect(db) as conn:
        best = conn.execute("""
            SELECT DISTINCT ON (id) id, chunk, embedding <=> vecplug.embed_query(%s) AS distance
            FROM docs_chunks
            ORDER BY id, embedding <=> vecplug.embed_query(%s)""", [question, question]).fetchall()
        found = chunks_of(conn)
    with one_torch_thread():
        query = model.embed_queries([question])[0]
    for key, chunk, distance in best:
        distances = [1 - float(vector @ query) for *_, vector in found[key]]
        assert chunk == found[key][int(np.argmin(distances))][3]
        assert distance == pytest.approx(min(distances), abs=1e-5)


def test_format_with_chunking_embeds_the_template_and_keeps_the_bare_chunk(pg_cluster, db, model):
    template = "title: {title}\n\n{chunk} {{{lang}}}"
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, title text, lang text, body text)")
        conn.execute("INSERT INTO docs VALUES (1, 'Paris', 'fr', %s)", [LONG[:2000]])
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 64, format => %s)", [template])
        conn.execute("ALTER TABLE docs RENAME COLUMN title TO heading")  # columns are kept by number
    drain(pg_cluster, db, model)

    def expected(title):
        with one_torch_thread():
            plain = model.embed_chunks([LONG[:2000]], chunk_tokens=64)[0]
            filled = [f"title: {title}\n\n{LONG[start:end]} {{fr}}" for start, end in plain.spans]
            return plain, filled, model.embed_documents(filled)

    with pg_cluster.connect(db) as conn:
        plain, _, vectors = expected("Paris")
        assert_chunks_as(chunks_of(conn)[1], LONG[:2000], SimpleNamespace(spans=plain.spans, vectors=vectors))
        conn.execute("UPDATE docs SET heading = 'Lyon'")  # a column the template names: embedded again
        assert len(queue_rows(conn)) == 1
    drain(pg_cluster, db, model)
    with pg_cluster.connect(db) as conn:
        plain, _, vectors = expected("Lyon")
        assert_chunks_as(chunks_of(conn)[1], LONG[:2000], SimpleNamespace(spans=plain.spans, vectors=vectors))


def test_format_without_chunking(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, title text, body text)")
        conn.execute("INSERT INTO docs VALUES (1, 'Paris', 'is a city'), (2, NULL, 'no title')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', format => E'{title}: {text}')")
    drain(pg_cluster, db, model)
    with pg_cluster.connect(db) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)

        def stored():
            return {key: np.asarray(vector.to_numpy()) for key, vector in conn.execute("SELECT id, embedding FROM docs")}

        with one_torch_thread():
            want = model.embed_documents(["Paris: is a city", ": no title"])
        got = stored()
        np.testing.assert_allclose(np.stack([got[1], got[2]]), want, atol=1e-5)
        conn.execute("UPDATE docs SET title = 'Lyon' WHERE id = 1")  # the stale vector goes at once
        assert conn.execute("SELECT embedding IS NULL FROM docs WHERE id = 1").fetchone()[0]
        assert [key for _, key, _ in queue_rows(conn)] == [["1"]]
    drain(pg_cluster, db, model)
    with pg_cluster.connect(db) as conn:
        register_vector(conn)
        with one_torch_thread():
            want = model.embed_documents(["Lyon: is a city"])[0]
        np.testing.assert_allclose(stored()[1], want, atol=1e-5)


@pytest.mark.parametrize("arguments, message", [
    ("format => '{title} {chunk}'", "needs chunking"),
    ("chunk_tokens => 64, format => '{title} {text}'", "is the whole text"),
    ("chunk_tokens => 64, format => '{nope} {chunk}'", "has no column nope"),
    ("chunk_tokens => 64, format => '{title}'", "has no {chunk}"),
    ("format => '{title}'", "has no {text}"),
    ("chunk_tokens => 64, format => '{title} } {chunk}'", "lone brace"),
    ("chunk_tokens => 64, late_chunking => true, format => '{title} {chunk}'", "late_chunking takes no format"),
    ("chunk_tokens => 0", "at least 1"),
    ("chunk_tokens => 64, mode => 'sink'", "mode must be"),
    ("chunk_tokens => 64, chunk_overlap => 64", "less than chunk_tokens"),
    ("chunk_overlap => 8", "need chunk_tokens"),
    ("destination => 'x'", "for chunked vectorizers"),
    ("chunk_tokens => 64, destination => 'other'", "cannot hold the chunks"),
])
def test_bad_arguments_fail_at_create_with_a_clear_message(pg_cluster, db, arguments, message):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, title text, body text)")
        conn.execute("CREATE TABLE other (id int PRIMARY KEY)")
        with pytest.raises(psycopg.Error, match=message):
            conn.execute(f"SELECT vecplug.create_vectorizer('docs', 'body', {arguments})")
        assert conn.execute("SELECT count(*) FROM vecplug.vectorizers").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('docs_chunks')").fetchone()[0] is None  # nothing was made


def test_drop_keeps_the_destination_unless_drop_column_and_a_kept_one_is_taken_again(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs VALUES (1, 'one'), (2, 'two')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 16)")
    drain(pg_cluster, db, model)
    with pg_cluster.connect(db) as conn:
        conn.execute("SELECT vecplug.drop_vectorizer('docs')")
        assert conn.execute("SELECT count(*) FROM docs_chunks_view").fetchone()[0] == 2  # table and view stay
        conn.execute("INSERT INTO docs VALUES (3, 'three')")  # no trigger left
        assert queue_rows(conn) == []
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 16)")  # the kept table
        assert [key for _, key, _ in queue_rows(conn)] == [["3"]]  # only the row without chunks
    drain(pg_cluster, db, model)
    with pg_cluster.connect(db) as conn:
        assert set(chunks_of(conn)) == {1, 2, 3}
        conn.execute("SELECT vecplug.drop_vectorizer('docs', drop_column => true)")
        assert conn.execute("SELECT to_regclass('docs_chunks'), to_regclass('docs_chunks_view')").fetchone() == (None, None)
        assert conn.execute("SELECT count(*) FROM vecplug.embedding_columns").fetchone()[0] == 0


def test_a_poisoned_row_is_set_aside_retry_failed_queues_it_again(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 16)")
        conn.execute("ALTER TABLE docs_chunks ADD CONSTRAINT no_poison CHECK (chunk NOT LIKE '%poison%')")
        conn.execute("INSERT INTO docs SELECT g, 'text number ' || g FROM generate_series(1, 9) g")
        conn.execute("INSERT INTO docs VALUES (10, 'this one is poison')")
    report = drain(pg_cluster, db, model, max_attempts=1, retry_delay=0)
    assert (report.embedded, report.failed) == (9, 1), str(report)
    with pg_cluster.connect(db) as conn:
        assert set(chunks_of(conn)) == set(range(1, 10))
        row = status(conn)["public.docs_chunks.embedding"]
        assert (row["pending"], row["failed"], row["embedded"]) == (0, 1, 9)
        assert "no_poison" in row["last_error"]
        conn.execute("ALTER TABLE docs_chunks DROP CONSTRAINT no_poison")
        assert conn.execute("SELECT vecplug.retry_failed('docs')").fetchone()[0] == 1
    assert drain(pg_cluster, db, model).embedded == 1
    with pg_cluster.connect(db) as conn:
        assert set(chunks_of(conn)) == set(range(1, 11))
        assert status(conn)["public.docs_chunks.embedding"]["failed"] == 0


def test_a_partitioned_source(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE parts (id int, region text, body text, PRIMARY KEY (id, region)) "
                     "PARTITION BY LIST (region)")
        conn.execute("CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu')")
        conn.execute("SELECT vecplug.create_vectorizer('parts', 'body', chunk_tokens => 16)")
        conn.execute("CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us')")  # attached later
        conn.execute("INSERT INTO parts VALUES (1, 'eu', 'through the parent')")
        conn.execute("INSERT INTO parts_us VALUES (2, 'us', 'straight into a partition')")
        conn.execute("UPDATE parts SET region = region WHERE id = 1")  # nothing that matters changed
        assert len(queue_rows(conn)) == 2
    drain(pg_cluster, db, model)
    with pg_cluster.connect(db) as conn:
        assert conn.execute("SELECT id, chunk FROM parts_chunks ORDER BY id").fetchall() == [
            (1, "through the parent"), (2, "straight into a partition")]
        conn.execute("DELETE FROM parts_us")
        assert conn.execute("SELECT count(*) FROM parts_chunks").fetchone()[0] == 1


def test_sync_mode_fills_the_format_in_sql_as_the_worker_does(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, title text, n numeric, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', mode => 'sync', "
                     "format => E'{title} ({n}) {{x}}: {text}')")
        conn.execute("INSERT INTO docs VALUES (1, 'Paris', 1.50, 'is a city'), (2, NULL, NULL, 'no title')")
        conn.execute("UPDATE docs SET n = 2 WHERE id = 1")  # a column the template names: embedded again
        from pgvector.psycopg import register_vector

        register_vector(conn)
        got = {key: np.asarray(vector.to_numpy()) for key, vector in conn.execute("SELECT id, embedding FROM docs")}
    with one_torch_thread():
        want = model.embed_documents(["Paris (2) {x}: is a city", " () {x}: no title"])
    np.testing.assert_allclose(np.stack([got[1], got[2]]), want, atol=1e-5)


def test_late_chunking(pg_cluster, db, model):
    texts = {1: LONG[:6000], 2: MULTIBYTE}
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 64, late_chunking => true)")
    assert drain(pg_cluster, db, model).embedded == 2
    with one_torch_thread():
        expected = dict(zip(texts, model.embed_chunks(list(texts.values()), chunk_tokens=64, late=True)))
    with pg_cluster.connect(db) as conn:
        found = chunks_of(conn)
        for key, text in texts.items():
            assert_chunks_as(found[key], text, expected[key])


def test_a_worker_whose_model_cannot_chunk_leaves_the_rows_queued(pg_cluster, db, model, monkeypatch):
    from vecplug_pgvector import chunks

    monkeypatch.setattr(chunks, "can_chunk", lambda model: False)  # as a model without token offsets
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 16)")
        conn.execute("INSERT INTO docs VALUES (1, 'one')")
    report = drain(pg_cluster, db, model)
    assert report.refused and report.failed == 0, str(report)
    with pg_cluster.connect(db) as conn:
        row = status(conn)["public.docs_chunks.embedding"]
        assert (row["pending"], row["failed"]) == (1, 0) and "cannot" in row["last_error"]
