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

from vecplug.errors import ModelMismatchError, VecplugError

VECTOR_TYPES = ("vector", "halfvec")
OPERATORS = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>", "l1": "<+>"}
_OPCLASS_DISTANCE = {"cosine_ops": "cosine", "l2_ops": "l2", "ip_ops": "inner_product", "l1_ops": "l1"}
HNSW_DEFAULT_EF_SEARCH = 40


class SearchTargetError(VecplugError, LookupError):
    """The table or column to search does not exist, or holds no vectors."""


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
    if isinstance(conn, str):
        import psycopg

        with psycopg.connect(conn, autocommit=True) as owned:
            return search(owned, table, text, k, column, where, params, model, server_url=server_url,
                          api_key=api_key, columns=columns, distance=distance, explain=explain)
    return _search(conn, table, text, k, column, where, params, model, server_url, api_key, columns, distance,
                   explain)


def _search(conn, table, text, k, column, where, params, model, server_url, api_key, columns, distance, explain):
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg.rows import dict_row

    target = _table_identifier(table)
    info = _describe(conn, target, table, column, columns)
    embedder = _embedder(model, server_url, api_key)
    if info["dimensions"] and info["dimensions"] != embedder.dimensions:
        raise ModelMismatchError(
            f"column {column!r} of {_display(table)} holds {info['dimensions']}-dimension vectors, but model "
            f"{embedder.name!r} gives {embedder.dimensions}: search with the model that filled the column "
            "(for Matryoshka-cut vectors, vecplug.load_model(name, dimensions=N)).")
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


def _table_identifier(table):
    from psycopg import sql

    if isinstance(table, str) and table:
        return sql.Identifier(table)
    if isinstance(table, (tuple, list)) and len(table) == 2 and all(isinstance(p, str) and p for p in table):
        return sql.Identifier(*table)
    raise TypeError(f"table must be a name (str) or a (schema, table) pair, not {table!r}")


def _display(table) -> str:
    return repr(table) if isinstance(table, str) else repr(".".join(table))


def _describe(conn, target, table, column, columns) -> dict:
    """The table's oid, the column's vector type and size, its index, and the columns to return."""
    found = conn.execute("SELECT to_regclass(%s)::oid", [target.as_string(conn)]).fetchone()[0]
    if found is None:
        raise SearchTargetError(
            f"no table {_display(table)} in database {conn.info.dbname!r}. Names are taken exactly (case and "
            "spaces count); pass a (schema, table) pair for a schema-qualified name.")
    rows = conn.execute("""
        SELECT a.attname, t.typname, n.nspname, a.atttypmod,
               (SELECT am.amname || ' ' || opc.opcname
                FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                JOIN pg_opclass opc ON opc.oid = i.indclass[0]
                WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum AND am.amname IN ('hnsw', 'ivfflat')
                ORDER BY am.amname = 'hnsw' DESC LIMIT 1)
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
    """, [found]).fetchall()
    by_name = {row[0]: row for row in rows}
    vector_columns = [row[0] for row in rows if row[1] in VECTOR_TYPES]
    if column not in by_name or by_name[column][1] not in VECTOR_TYPES:
        what = "has no column" if column not in by_name else f"has a {by_name[column][1]} column, not a vector one,"
        raise SearchTargetError(
            f"table {_display(table)} {what} {column!r}; its vector columns: {vector_columns or 'none'}. "
            "Pass column=... (exact name), or add a vector column and fill it first.")
    _, type_name, type_schema, typmod, index = by_name[column]
    selected = list(columns) if columns is not None else [name for name in by_name if name != column]
    missing = [name for name in selected if name not in by_name]
    if missing:
        raise SearchTargetError(f"table {_display(table)} has no column(s) {missing}")
    if "distance" in selected:
        raise ValueError(f"table {_display(table)} has a column named 'distance', which the results use for "
                         "the distance: pass columns=[...] without it")
    index_method, opclass = index.split(" ", 1) if index else (None, "")
    index_distance = next((name for suffix, name in _OPCLASS_DISTANCE.items() if opclass.endswith(suffix)), None)
    return {"type_name": type_name, "type_schema": type_schema, "dimensions": typmod if typmod > 0 else None,
            "columns": selected, "index_method": index_method, "index_distance": index_distance}


def _embedder(model, server_url, api_key):
    import vecplug

    if server_url is not None:
        from vecplug.client import RemoteModel

        return RemoteModel(server_url, api_key=api_key)
    if isinstance(model, vecplug.EmbeddingModel):
        return model
    return vecplug.load_model(model)
