"""Vector columns: finding them by exact name, and which model filled them (``vecplug.embedding_columns``).

A column's model is recorded once (``record_model``, or a vectorizer) and
checked by everyone who puts vectors next to it (``search``, the worker)
with ``vecplug.check_same_space``: same fingerprint, same dimensions.
"""
from __future__ import annotations

import json

import vecplug
from vecplug.errors import ModelMismatchError, VecplugError

from .connection import connection_for

VECTOR_TYPES = ("vector", "halfvec")
_OPCLASS_DISTANCE = {"cosine_ops": "cosine", "l2_ops": "l2", "ip_ops": "inner_product", "l1_ops": "l1"}


class SearchTargetError(VecplugError, LookupError):
    """The table or column does not exist, or holds no vectors."""


def table_identifier(table):
    from psycopg import sql

    if isinstance(table, str) and table:
        return sql.Identifier(table)
    if isinstance(table, (tuple, list)) and len(table) == 2 and all(isinstance(p, str) and p for p in table):
        return sql.Identifier(*table)
    raise TypeError(f"table must be a name (str) or a (schema, table) pair, not {table!r}")


def display(table) -> str:
    return repr(table) if isinstance(table, str) else repr(".".join(table))


def describe(conn, target, table, column, columns) -> dict:
    """The table's oid, the column's vector type and size, its index, and the columns to return."""
    found = conn.execute("SELECT to_regclass(%s)::oid", [target.as_string(conn)]).fetchone()[0]
    if found is None:
        raise SearchTargetError(
            f"no table {display(table)} in database {conn.info.dbname!r}. Names are taken exactly (case and "
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
            f"table {display(table)} {what} {column!r}; its vector columns: {vector_columns or 'none'}. "
            "Pass column=... (exact name), or add a vector column and fill it first.")
    _, type_name, type_schema, typmod, index = by_name[column]
    selected = list(columns) if columns is not None else [name for name in by_name if name != column]
    missing = [name for name in selected if name not in by_name]
    if missing:
        raise SearchTargetError(f"table {display(table)} has no column(s) {missing}")
    if "distance" in selected:
        raise ValueError(f"table {display(table)} has a column named 'distance', which the results use for "
                         "the distance: pass columns=[...] without it")
    index_method, opclass = index.split(" ", 1) if index else (None, "")
    index_distance = next((name for suffix, name in _OPCLASS_DISTANCE.items() if opclass.endswith(suffix)), None)
    return {"oid": found, "type_name": type_name, "type_schema": type_schema,
            "dimensions": typmod if typmod > 0 else None,
            "columns": selected, "index_method": index_method, "index_distance": index_distance}


def recorded_model(conn, table_oid: int, column: str) -> dict | None:
    """The model recorded for the column (``ModelSpec.to_dict()``), or None (no record, or vecplug not installed)."""
    if conn.execute("SELECT to_regclass('vecplug.embedding_columns')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT model FROM vecplug.embedding_columns WHERE table_oid = %s AND column_name = %s",
                       [table_oid, column]).fetchone()
    return row[0] if row else None


def check_column_model(conn, info: dict, table, column: str, model, action: str) -> None:
    """Refuse ``model`` for the column: a recorded model of another vector space, or another size."""
    recorded = recorded_model(conn, info["oid"], column)
    if recorded is not None:
        vecplug.check_same_space(recorded, model, where=f"column {column!r} of {display(table)}", action=action)
    check_column_size(info, table, column, model)


def check_column_size(info: dict, table, column: str, model) -> None:
    if info["dimensions"] and info["dimensions"] != model.dimensions:
        raise ModelMismatchError(
            f"column {column!r} of {display(table)} holds {info['dimensions']}-dimension vectors, but model "
            f"{model.name!r} gives {model.dimensions}: use the model that filled the column (for Matryoshka-cut "
            "vectors, vecplug.load_model(name, dimensions=N)).")


def record_model(conn, table, column: str = "embedding", model=None, *, replace: bool = False) -> dict:
    """Record that ``model`` filled ``column`` of ``table``; later searches refuse any other model.

    For columns filled from Python (vectorizers record their own). The
    column must be a vector column of the model's size. A column that has a
    record of another model is refused unless ``replace`` (after embedding
    every row again). Needs vecplug installed and ownership of the table.
    Returns the recorded spec.
    """
    import psycopg

    if isinstance(conn, str):
        with connection_for(conn, "pg record model") as owned:
            return record_model(owned, table, column, model, replace=replace)
    loaded = model if isinstance(model, vecplug.EmbeddingModel) else vecplug.load_model(model)
    info = describe(conn, table_identifier(table), table, column, None)
    if conn.execute("SELECT to_regclass('vecplug.embedding_columns')").fetchone()[0] is None:
        raise SearchTargetError(f"vecplug is not installed in database {conn.info.dbname!r}: run "
                                "`vecplug pg install` (or vecplug_pgvector.install(conn)) first")
    if replace:
        check_column_size(info, table, column, loaded)
    else:
        check_column_model(conn, info, table, column, loaded, action="record")
    spec = loaded.spec.to_dict()
    try:
        with conn.transaction():
            conn.execute("""
                INSERT INTO vecplug.embedding_columns (table_oid, column_name, model) VALUES (%s, %s, %s)
                ON CONFLICT (table_oid, column_name) DO UPDATE SET model = EXCLUDED.model,
                    recorded_by = current_user, recorded_at = now()
            """, [info["oid"], column, json.dumps(spec)])
    except psycopg.errors.InsufficientPrivilege:
        raise PermissionError(f"role {conn.info.user!r} does not own {display(table)}: only its owner may record "
                              "the model of its columns") from None
    return spec
