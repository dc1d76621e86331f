"""Which table and columns a ``PostgresStore`` uses: found once in the catalog, named schema-qualified after.

The user's ``--table`` is resolved as PostgreSQL resolves a name (an exact
name on the search_path, or ``schema.table``); from then on the store names
it by schema and table through ``sql.Identifier``, so a later change of
search_path cannot point it elsewhere. Columns come from the user, else
from the table's vectorizer (``vecplug.vectorizer_columns``), else the
defaults (``embedding``, ``body``, the primary key).
"""
from __future__ import annotations

import dataclasses

from vecplug.errors import InvalidSettingError
from vecplug.stores import StoreNotFoundError

from .columns import VECTOR_TYPES

INTEGER_TYPES = ("int2", "int4", "int8")
DEFAULT_VECTOR_COLUMN = "embedding"
DEFAULT_TEXT_COLUMN = "body"


@dataclasses.dataclass(frozen=True)
class StoreColumns:
    schema: str
    name: str
    vector: str
    text: str | None            # None: the table has no text column to show
    id: str
    id_type_schema: str
    id_type_name: str
    vectorizer_id: int | None = None
    vectorizer_model: dict | None = None  # {"name", "fingerprint", "dimensions"} once a model is known

    @property
    def table(self):
        from psycopg import sql

        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def integer_id(self) -> bool:
        return self.id_type_schema == "pg_catalog" and self.id_type_name in INTEGER_TYPES


def find_table(conn, table) -> tuple[str, str]:
    """(schema, table) of ``table``: a name (``docs``, or ``schema.table`` when no table has the dotted name) or a
    (schema, table) pair. ``StoreNotFoundError`` names it when it does not exist."""
    from psycopg import sql

    if isinstance(table, (tuple, list)) and len(table) == 2 and all(isinstance(p, str) and p for p in table):
        candidates = [sql.Identifier(*table)]
    elif isinstance(table, str) and table:
        candidates = [sql.Identifier(table)]
        if "." in table:
            candidates.append(sql.Identifier(*table.split(".", 1)))
    else:
        raise TypeError(f"table must be a name (str) or a (schema, table) pair, not {table!r}")
    for candidate in candidates:
        row = conn.execute("""
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = to_regclass(%s)
        """, [candidate.as_string(conn)]).fetchone()
        if row:
            return row[0], row[1]
    shown = table if isinstance(table, str) else ".".join(table)
    raise StoreNotFoundError(f"no table {shown!r} in database {conn.info.dbname!r} (names are exact: case "
                             "counts; schema.table for a table outside the search_path)")


def find_columns(conn, schema: str, name: str, column: str | None, text_column: str | None,
                 id_column: str | None) -> StoreColumns:
    """The columns to use (see the module docstring); a wrong or ambiguous one is an error naming the option."""
    oid, attributes = _attributes(conn, schema, name)
    display = f"{schema}.{name}"
    vectorizer = _vectorizer(conn, oid, display, column)
    vector = column or (vectorizer and vectorizer["embedding_column"]) or DEFAULT_VECTOR_COLUMN
    if attributes.get(vector, {}).get("type_name") not in VECTOR_TYPES:
        vector_columns = [name for name, about in attributes.items() if about["type_name"] in VECTOR_TYPES]
        what = "has no column" if vector not in attributes else "has no vector column"
        raise InvalidSettingError(f"table {display} {what} {vector!r}; its vector columns: "
                                  f"{', '.join(vector_columns) or 'none'} (pass --column COLUMN)")
    text = text_column or (vectorizer and vectorizer["text_column"]) or DEFAULT_TEXT_COLUMN
    if text not in attributes:
        if text_column:
            raise InvalidSettingError(f"table {display} has no column {text_column!r} (--text-column); its "
                                    f"columns: {', '.join(attributes)}")
        text = None
    if id_column:
        if id_column not in attributes:
            raise InvalidSettingError(f"table {display} has no column {id_column!r} (--id-column); its "
                                    f"columns: {', '.join(attributes)}")
        key = id_column
    elif vectorizer and len(vectorizer["key_columns"]) == 1:
        key = vectorizer["key_columns"][0]
    else:
        key = _primary_key(conn, oid, display)
    if not _unique_alone(conn, oid, attributes[key]["attnum"]):
        raise InvalidSettingError(
            f"column {key!r} of table {display} does not identify a row alone (no primary key or unique index on "
            "it alone): pass --id-column COLUMN naming a unique column")
    model = None
    if vectorizer and vectorizer["model"]:
        model = {"name": vectorizer["model"], "fingerprint": vectorizer["model_fingerprint"] or "",
                 "dimensions": vectorizer["dimensions"]}
    return StoreColumns(schema, name, vector, text, key, attributes[key]["type_schema"],
                        attributes[key]["type_name"], vectorizer["id"] if vectorizer else None, model)


def _attributes(conn, schema: str, name: str) -> tuple[int, dict]:
    rows = conn.execute("""
        SELECT c.oid, a.attname, a.attnum, tn.nspname, t.typname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
        WHERE n.nspname = %s AND c.relname = %s ORDER BY a.attnum
    """, [schema, name]).fetchall()
    if not rows:
        raise StoreNotFoundError(f"table {schema}.{name} has no columns")
    return rows[0][0], {row[1]: {"attnum": row[2], "type_schema": row[3], "type_name": row[4]} for row in rows}


def _vectorizer(conn, oid: int, display: str, column: str | None) -> dict | None:
    """The table's vectorizer (the one of ``column`` if given); chunked ones are refused (decision 0096)."""
    if conn.execute("SELECT to_regclass('vecplug.vectorizer_columns')").fetchone()[0] is None:
        return None
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cursor:
        found = cursor.execute("""
            SELECT id, name, text_column, embedding_column, key_columns, model, model_fingerprint, dimensions,
                   destination IS NOT NULL AS chunked, destination_name
            FROM vecplug.vectorizer_columns WHERE source = %s OR destination = %s ORDER BY id
        """, [oid, oid]).fetchall()
    chunked = [row for row in found if row["chunked"]]
    if chunked:
        row = chunked[0]
        raise InvalidSettingError(
            f"table {display} belongs to chunked vectorizer {row['id']} ({row['name']}): its vectors are one per "
            "passage, keyed by (row key, chunk_index), and search/recommend/cluster/dedup need one vector per row; "
            f"query the passages with vecplug_pgvector.search or SQL on {row['destination_name']}_view instead")
    if column is not None:
        found = [row for row in found if row["embedding_column"] == column]
    if len(found) > 1:
        raise InvalidSettingError(f"table {display} has {len(found)} vectorizers (columns "
                                  f"{', '.join(row['embedding_column'] for row in found)}): pass --column COLUMN")
    return found[0] if found else None


def _primary_key(conn, oid: int, display: str) -> str:
    rows = conn.execute("""
        SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = %s AND i.indisprimary
    """, [oid]).fetchall()
    if len(rows) != 1:
        what = "no primary key" if not rows else f"a primary key of {len(rows)} columns"
        raise InvalidSettingError(f"table {display} has {what}: pass --id-column COLUMN naming a column that "
                                  "identifies a row alone")
    return rows[0][0]


def _unique_alone(conn, oid: int, attnum: int) -> bool:
    return conn.execute("""
        SELECT EXISTS (SELECT FROM pg_index WHERE indrelid = %s AND indisunique AND indnkeyatts = 1
                       AND indkey[0] = %s AND indpred IS NULL AND indexprs IS NULL)
    """, [oid, attnum]).fetchone()[0]
