"""``search``: nearest rows to a text, with the query embedded in the application.

For applications, and for managed PostgreSQL, where the database cannot
call out: the query is embedded here (the model in this process, or a
``vecplug serve`` through ``server_url``) and the database runs the same
index-friendly query as the SQL route:

    SELECT ..., embedding <=> '[...]'::vector AS distance FROM docs
    WHERE embedding IS NOT NULL ORDER BY embedding <=> '[...]'::vector LIMIT k

Every identifier is built with ``psycopg.sql.Identifier``; the table and
column are looked up in the catalog first, so a wrong name is an error that
names it, never SQL. The distance operator follows the column's HNSW or
IVFFlat index (cosine without one), so the index is used.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from vecplug.errors import ModelMismatchError

from .columns import check_column_model, describe, table_identifier
from .connection import connection_for

OPERATORS = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>", "l1": "<+>"}
HNSW_DEFAULT_EF_SEARCH = 40
SERVER_RETRY_S = 5  # a search waits this long for a server that refuses connections or is busy, then says so


def search(conn, table, text: str, k: int = 10, column: str = "embedding", where: str | None = None,
           params: Sequence | Mapping | None = None, model=None, *, server_url: str | None = None,
           api_key: str | None = None, columns: Sequence[str] | None = None,
           distance: str | None = None, explain: bool = False) -> list[dict]:
    """The ``k`` rows nearest to ``text`` (query prompt applied), best first, as dicts with ``"distance"``.

    ``table`` is one exact name (case, spaces and quotes are kept: it is
    quoted, never parsed) or a ``(schema, table)`` pair. ``where`` is an
    SQL condition with psycopg placeholders for ``params`` (``"lang = %s"``).
    ``model`` is what ``vecplug.load_model`` takes, or a loaded model; with
    ``server_url`` the query is embedded by that ``vecplug serve``.
    ``columns`` (default: all but the vector column) are returned; the
    vector column's type decides the model's dimensions must match.
    ``distance`` ("cosine", "l2", "inner_product", "l1") defaults to the
    index's, else cosine. ``conn``: a psycopg 3 connection or a DSN string.
    ``explain=True`` returns PostgreSQL's plan (lines of ``EXPLAIN``) instead
    of rows: does the search use the index?
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, not {k!r}")
    if distance is not None and distance not in OPERATORS:
        raise ValueError(f"distance must be one of {sorted(OPERATORS)}, not {distance!r}")
    if where is not None and not isinstance(where, str):
        raise TypeError("where must be an SQL condition string, with %s placeholders for params")
    with connection_for(conn, "pg search") as connection:
        return _search(connection, table, text, k, column, where, params, model, server_url, api_key, columns,
                       distance, explain)


def _search(conn, table, text, k, column, where, params, model, server_url, api_key, columns, distance, explain):
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg.rows import dict_row

    target = table_identifier(table)
    info = describe(conn, target, table, column, columns)
    embedder = _embedder(model, server_url, api_key)
    check_column_model(conn, info, table, column, embedder, action="search it with")
    vector = embedder.embed_queries([text])[0]
    operator = OPERATORS[distance or info["index_distance"] or "cosine"]
    query_vector = sql.SQL("CAST({} AS {})").format(
        sql.Literal("[" + ",".join("%.9g" % value for value in vector) + "]"),
        sql.Identifier(info["type_schema"], info["type_name"]))
    distance_expression = sql.SQL("{} OPERATOR({}.{}) {}").format(
        sql.Identifier(column), sql.Identifier(info["type_schema"]), sql.SQL(operator), query_vector)
    condition = sql.SQL("{} IS NOT NULL").format(sql.Identifier(column))
    if where:
        condition = sql.SQL("{} AND ({})").format(condition, sql.SQL(where))
    query = sql.SQL("SELECT {columns}, {distance} AS distance FROM {table} WHERE {condition} "
                    "ORDER BY {distance} LIMIT {k}").format(
        columns=sql.SQL(", ").join(sql.Identifier(name) for name in info["columns"]),
        distance=distance_expression, table=target, condition=condition, k=sql.Literal(k))
    register_vector(conn)
    options = {}
    if info["index_method"] == "hnsw":
        options["hnsw.ef_search"] = str(max(k, HNSW_DEFAULT_EF_SEARCH))
        if where:
            options["hnsw.iterative_scan"] = "strict_order"  # pgvector 0.8: filters still return k rows
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        for name, value in options.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        if explain:
            cursor.execute(sql.SQL("EXPLAIN ") + query, params)
            return [row["QUERY PLAN"] for row in cursor.fetchall()]
        cursor.execute(query, params)
        return cursor.fetchall()


def _embedder(model, server_url, api_key):
    import vecplug

    if server_url is None:
        return model if isinstance(model, vecplug.EmbeddingModel) else vecplug.load_model(model)
    from vecplug.client import RemoteModel

    remote = RemoteModel(server_url, api_key=api_key, retry_seconds=SERVER_RETRY_S)
    if model is not None:
        wanted = model.spec if isinstance(model, vecplug.EmbeddingModel) else None
        if wanted is not None and wanted.fingerprint and wanted.fingerprint != remote.spec.fingerprint:
            raise ModelMismatchError(f"the server at {remote.url} serves {remote.name} (fingerprint "
                                     f"{remote.spec.fingerprint}), not {wanted.name} ({wanted.fingerprint})")
        if wanted is None and model != remote.name and model not in remote.spec.aliases:
            raise ModelMismatchError(f"the server at {remote.url} serves {remote.name}, not {model!r}: "
                                     "pass the model it serves, or no model")
    return remote
