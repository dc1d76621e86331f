"""A table of held texts with embeddings from the Python API, and the brute-force reference to check searches."""
from __future__ import annotations

import numpy as np

from vecplug.testing import stdlib_paragraphs


def held_texts(count: int = 1000) -> list[str]:
    """``count`` distinct real paragraphs from Python's documentation, in a fixed order."""
    texts = list(dict.fromkeys(stdlib_paragraphs()))[:count]
    assert len(texts) == count, f"only {len(texts)} distinct paragraphs"
    return texts


def create_docs_table(conn, model, texts: list[str], table=None, column: str = "embedding",
                      index: bool = True) -> np.ndarray:
    """``table`` (default ``docs``): id, body, lang, and the vectors of ``model.embed_documents(texts)``.

    Written with COPY through pgvector's binary adapter; an HNSW cosine index
    when ``index``. Returns the vectors (row i has id i).
    """
    from pgvector.psycopg import register_vector
    from psycopg import sql

    table = table if table is not None else sql.Identifier("docs")
    vectors = model.embed_documents(texts)
    register_vector(conn)
    conn.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, body text NOT NULL, lang text NOT NULL, {} vector({}))")
                 .format(table, sql.Identifier(column), sql.Literal(model.dimensions)))
    with conn.cursor() as cursor:
        copy = sql.SQL("COPY {} (id, body, lang, {}) FROM STDIN WITH (FORMAT BINARY)").format(
            table, sql.Identifier(column))
        with cursor.copy(copy) as writer:
            writer.set_types(["integer", "text", "text", "vector"])
            for row_id, (text, vector) in enumerate(zip(texts, vectors)):
                writer.write_row((row_id, text, "en" if row_id % 2 == 0 else "fr", vector))
    if index:
        conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw ({} vector_cosine_ops)").format(
            table, sql.Identifier(column)))
    conn.execute(sql.SQL("ANALYZE {}").format(table))
    return vectors


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int, allowed=None) -> list[tuple[int, float]]:
    """(row id, cosine distance) of the ``k`` nearest rows, exactly, best first."""
    distances = 1.0 - vectors.astype(np.float64) @ query.astype(np.float64)
    ids = np.arange(len(vectors)) if allowed is None else np.asarray(sorted(allowed))
    order = ids[np.argsort(distances[ids], kind="stable")][:k]
    return [(int(i), float(distances[i])) for i in order]


def assert_same_neighbours(found: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    """Same distances in the same order, and the same ids wherever a distance is not tied."""
    assert len(found) == len(expected)
    np.testing.assert_allclose([d for _, d in found], [d for _, d in expected], atol=2e-6)
    expected_distances = [d for _, d in expected]
    for (found_id, distance), (expected_id, _) in zip(found, expected):
        ties = sum(abs(distance - other) < 2e-6 for other in expected_distances)
        if ties == 1:
            assert found_id == expected_id, (found, expected)
