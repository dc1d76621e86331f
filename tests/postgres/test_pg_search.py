"""``vecplug_pgvector.search`` on a real PostgreSQL: the query embedded in this process, the index used.

The table holds 1,000 held texts embedded by the Python API (tiny model,
float32); every answer is checked against brute force over the same vectors.
"""
from __future__ import annotations

import numpy as np
import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_docs import assert_same_neighbours, brute_force, create_docs_table, held_texts  # noqa: E402
from psycopg import sql  # noqa: E402

QUERIES = ["how do I read a file line by line?", "what is a generator expression",
           "exceptions raised inside a with statement", "keyword arguments with default values", ""]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def docs(pg_cluster, model):
    """Database ``search_docs`` with table ``docs`` (1,000 texts, HNSW cosine index); yields (dbname, vectors)."""
    name = pg_cluster.create_database("search_docs", extensions=("vector",))
    with pg_cluster.connect(name) as conn:
        vectors = create_docs_table(conn, model, held_texts(1000))
    yield name, vectors
    pg_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ids_and_distances(rows) -> list[tuple[int, float]]:
    return [(row["id"], row["distance"]) for row in rows]


@pytest.mark.parametrize("query", QUERIES)
def test_search_returns_the_brute_force_top_k(pg_cluster, docs, model, query):
    name, vectors = docs
    with pg_cluster.connect(name) as conn:
        rows = vecplug_pgvector.search(conn, "docs", query, k=10, model=model)
    expected = brute_force(vectors, model.embed_queries([query])[0], 10)
    assert_same_neighbours(ids_and_distances(rows), expected)
    assert list(rows[0]) == ["id", "body", "lang", "distance"]  # the vector column is not sent back
    assert rows[0]["body"] == held_texts(1000)[rows[0]["id"]]


def test_search_can_use_the_hnsw_index(pg_cluster, docs, model):
    """On 1,000 rows PostgreSQL rightly prefers an exact scan; with that ruled out the plan is the index scan.

    (A query the index cannot serve, say a volatile expression or another
    operator than the index's, would still get a sort with seqscan off.)
    """
    with pg_cluster.connect(docs[0]) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(vecplug_pgvector.search(conn, "docs", QUERIES[0], model=model, explain=True))
    assert "Index Scan using docs_embedding_idx on docs" in plan, plan
    assert "Order By: (embedding <=> " in plan, plan


def test_search_with_a_filter_and_more_rows_than_ef_search(pg_cluster, docs, model):
    name, vectors = docs
    query = "sorting a list in place"
    query_vector = model.embed_queries([query])[0]
    with pg_cluster.connect(name) as conn:
        rows = vecplug_pgvector.search(conn, "docs", query, k=60, where="lang = %s AND id < %s",
                                       params=["fr", 900], model=model)
        named = vecplug_pgvector.search(conn, "docs", query, k=5, where="lang = %(lang)s", params={"lang": "en"},
                                        model=model, columns=["id"])
        assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"  # set for the search only
    french = [i for i in range(900) if i % 2 == 1]
    assert_same_neighbours(ids_and_distances(rows), brute_force(vectors, query_vector, 60, allowed=french))
    assert_same_neighbours(ids_and_distances(named), brute_force(vectors, query_vector, 5, allowed=range(0, 1000, 2)))
    assert list(named[0]) == ["id", "distance"]


def test_search_takes_a_dsn_and_keeps_the_callers_transaction(pg_cluster, docs, model):
    name, vectors = docs
    rows = vecplug_pgvector.search(pg_cluster.dsn(name), "docs", "a dictionary", k=3, model=model)
    assert [row["id"] for row in rows] == [i for i, _ in brute_force(vectors, model.embed_queries(["a dictionary"])[0], 3)]
    with pg_cluster.connect(name, autocommit=False) as conn:
        conn.execute("CREATE TEMP TABLE marker (x int)")
        vecplug_pgvector.search(conn, "docs", "a dictionary", k=3, model=model)
        assert conn.execute("SELECT count(*) FROM marker").fetchone()[0] == 0  # still the same transaction
        conn.rollback()


HOSTILE_SCHEMA = 'Mixed "Schema"'
HOSTILE_TABLE = 'Odd "Table"; DROP TABLE docs; --'
HOSTILE_COLUMN = "My Embedding's"


def test_names_that_need_quoting_and_try_injection(pg_cluster, docs, model):
    name, _ = docs
    texts = held_texts(40)
    with pg_cluster.connect(name) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOSTILE_SCHEMA)))
        vectors = create_docs_table(conn, model, texts, table=sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE),
                                    column=HOSTILE_COLUMN)
        rows = vecplug_pgvector.search(conn, (HOSTILE_SCHEMA, HOSTILE_TABLE), "closures", k=4,
                                       column=HOSTILE_COLUMN, model=model)
        expected = brute_force(vectors, model.embed_queries(["closures"])[0], 4)
        assert_same_neighbours(ids_and_distances(rows), expected)
        with pytest.raises(vecplug_pgvector.SearchTargetError, match=r"no table 'Odd \"Table\"; DROP TABLE docs"):
            vecplug_pgvector.search(conn, HOSTILE_TABLE, "closures", model=model)  # not in search_path
        with pytest.raises(vecplug_pgvector.SearchTargetError, match="no table 'docs; DROP TABLE docs'"):
            vecplug_pgvector.search(conn, "docs; DROP TABLE docs", "closures", model=model)
        with pytest.raises(vecplug_pgvector.SearchTargetError, match="no table 'DOCS'"):
            vecplug_pgvector.search(conn, "DOCS", "closures", model=model)  # exact names: case counts
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 1000
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(HOSTILE_SCHEMA)))


def test_a_table_without_the_column_names_what_it_has(pg_cluster, docs, model):
    with pg_cluster.connect(docs[0]) as conn:
        with pytest.raises(vecplug_pgvector.SearchTargetError,
                           match=r"table 'docs' has no column 'vector'; its vector columns: \['embedding'\]"):
            vecplug_pgvector.search(conn, "docs", "x", column="vector", model=model)
        with pytest.raises(vecplug_pgvector.SearchTargetError, match="has a text column, not a vector one"):
            vecplug_pgvector.search(conn, "docs", "x", column="body", model=model)
        with pytest.raises(vecplug_pgvector.SearchTargetError, match=r"no column\(s\) \['title'\]"):
            vecplug_pgvector.search(conn, "docs", "x", columns=["id", "title"], model=model)


def test_a_model_of_other_dimensions_is_refused(pg_cluster, docs, tmp_path):
    from vecplug.testing import write_model

    other = vecplug.load_model(str(write_model(tmp_path / "small", shape="small")), dtype="float32")
    with pg_cluster.connect(docs[0]) as conn:
        with pytest.raises(vecplug.ModelMismatchError, match=r"holds 64-dimension vectors, but model .* gives 384"):
            vecplug_pgvector.search(conn, "docs", "x", model=other)


@pytest.mark.parametrize("arguments, error, message", [
    ({"text": None}, TypeError, "text must be a str"),
    ({"text": b"bytes"}, TypeError, "text must be a str"),
    ({"k": 0}, ValueError, "k must be a positive int"),
    ({"k": True}, ValueError, "k must be a positive int"),
    ({"distance": "dot"}, ValueError, "distance must be one of"),
    ({"table": "public.docs.x.y".split(".")}, TypeError, "table must be a name"),
])
def test_bad_arguments(pg_cluster, docs, model, arguments, error, message):
    call = {"table": "docs", "text": "x", **arguments}
    with pg_cluster.connect(docs[0]) as conn, pytest.raises(error, match=message):
        vecplug_pgvector.search(conn, call.pop("table"), call.pop("text"), model=model, **call)


def test_empty_and_one_megabyte_queries(pg_cluster, docs, model):
    name, vectors = docs
    huge = ("All work and no play makes Jack a dull boy. " * 25000)[:1_000_000]
    with pg_cluster.connect(name) as conn:
        for text in ("", huge):
            rows = vecplug_pgvector.search(conn, "docs", text, k=3, model=model)
            assert_same_neighbours(ids_and_distances(rows), brute_force(vectors, model.embed_queries([text])[0], 3))


def test_distance_follows_the_index_or_is_chosen(pg_cluster, docs, model):
    name, vectors = docs
    query_vector = model.embed_queries(["modules and packages"])[0]
    with pg_cluster.connect(name) as conn:
        l2 = vecplug_pgvector.search(conn, "docs", "modules and packages", k=3, model=model, distance="l2")
    expected = brute_force(vectors, query_vector, 3)
    assert [row["id"] for row in l2] == [i for i, _ in expected]  # unit vectors: l2 ranks like cosine
    np.testing.assert_allclose([row["distance"] for row in l2], [np.sqrt(2 * d) for _, d in expected], atol=1e-5)


def test_search_on_managed_postgres(pg_cluster, managed_db, model):
    """No plpython3u there: install gives the core, and search works with the model in this process."""
    with pg_cluster.connect(managed_db, user="app") as conn:
        report = vecplug_pgvector.install(conn)
        assert report.query_functions == "not installed"
        vectors = create_docs_table(conn, model, held_texts(200))
        rows = vecplug_pgvector.search(conn, "docs", "string formatting", k=5, model=model)
    assert_same_neighbours(ids_and_distances(rows), brute_force(vectors, model.embed_queries(["string formatting"])[0], 5))


def test_a_recorded_column_refuses_another_model_of_the_same_size(pg_cluster, fresh_db, model,
                                                                  tiny_model_no_prompts_dir):
    other = vecplug.load_model(str(tiny_model_no_prompts_dir), dtype="float32")  # 64 dims too, other weights
    assert other.dimensions == model.dimensions and other.spec.fingerprint != model.spec.fingerprint
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE EXTENSION vector")
        create_docs_table(conn, model, held_texts(30))
        with pytest.raises(vecplug_pgvector.SearchTargetError, match="vecplug is not installed"):
            vecplug_pgvector.record_model(conn, "docs", "embedding", model)
        vecplug_pgvector.install(conn)
        assert vecplug_pgvector.search(conn, "docs", "x", k=1, model=other)  # nothing recorded: only sizes checked
        recorded = vecplug_pgvector.record_model(conn, "docs", "embedding", model)
        assert recorded["fingerprint"] == model.spec.fingerprint
        assert len(vecplug_pgvector.search(conn, "docs", "x", k=3, model=model)) == 3
        with pytest.raises(vecplug.ModelMismatchError,
                           match=r"column 'embedding' of 'docs' was made with .*refusing to search it with"):
            vecplug_pgvector.search(conn, "docs", "x", model=other)
        with pytest.raises(vecplug.ModelMismatchError, match="refusing to record"):
            vecplug_pgvector.record_model(conn, "docs", "embedding", other)
        vecplug_pgvector.record_model(conn, "docs", "embedding", other, replace=True)  # after re-embedding
        with pytest.raises(vecplug.ModelMismatchError):
            vecplug_pgvector.search(conn, "docs", "x", model=model)
        small = vecplug.load_model(str(tiny_model_no_prompts_dir), dtype="float32", dimensions=32)
        with pytest.raises(vecplug.ModelMismatchError, match="holds 64-dimension vectors"):
            vecplug_pgvector.record_model(conn, "docs", "embedding", small, replace=True)


def test_only_a_tables_owner_records_its_columns_model(pg_cluster, fresh_db, model):
    with pg_cluster.connect(fresh_db) as conn:
        vecplug_pgvector.install(conn)
        conn.execute("GRANT CREATE ON SCHEMA public TO app")
    with pg_cluster.connect(fresh_db, user="app") as conn:
        create_docs_table(conn, model, held_texts(10))
        conn.execute("GRANT SELECT ON docs TO reader")
        vecplug_pgvector.record_model(conn, "docs", "embedding", model)  # app owns docs, not schema vecplug
    with pg_cluster.connect(fresh_db, user="reader") as conn:
        with pytest.raises(PermissionError, match="role 'reader' does not own 'docs'"):
            vecplug_pgvector.record_model(conn, "docs", "embedding", model, replace=True)
        assert conn.execute("UPDATE vecplug.embedding_columns SET model = '{}'").rowcount == 0  # not its rows
        assert len(vecplug_pgvector.search(conn, "docs", "x", k=2, model=model)) == 2
