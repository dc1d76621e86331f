"""Vectorizers as the worker sees them: their description, their SQL, and which model may write to them.

A vectorizer is a row of ``vecplug.vectorizers`` (made by
``vecplug.create_vectorizer`` in SQL); ``vecplug.vectorizer_columns`` gives
it with the current names of its table and columns (stored by number, so
renames are followed). Every identifier here goes through
``psycopg.sql.Identifier``; primary key values travel as text (each type's
own output form) and are cast back with the key column's own type.
"""
from __future__ import annotations

import dataclasses

import vecplug
from vecplug.errors import ModelMismatchError, VecplugError


class VectorizerError(VecplugError, LookupError):
    """No such vectorizer, or vecplug's vectorizer tables cannot be read here."""


@dataclasses.dataclass(frozen=True)
class Vectorizer:
    id: int
    name: str                       # schema.table.column, each part quoted as SQL needs
    schema: str | None              # None once the table is dropped
    table: str | None
    text_column: str | None
    embedding_column: str | None
    next_column: str | None         # shadow column of a re-embedding in progress
    key_columns: tuple[str, ...]
    key_types: tuple[str, ...]
    mode: str
    dimensions: int
    storage: str
    index: str
    model: str | None
    model_fingerprint: str | None   # of the vectors at ``dimensions``; None until a worker pins it
    next_model: str | None
    next_model_fingerprint: str | None
    next_dimensions: int | None
    vector_schema: str | None

    @property
    def exists(self) -> bool:
        return self.table is not None and self.text_column is not None and self.embedding_column is not None

    @property
    def target(self) -> vecplug.Target:
        """What ``vecplug_before_ingest`` plugins are told: ``Target("postgres", "schema.table")``."""
        return vecplug.Target("postgres", f"{self.schema}.{self.table}")

    def space(self, next_column: bool = False) -> dict:
        """The recorded vector space, as ``vecplug.check_same_space`` reads it."""
        if next_column:
            return {"name": self.next_model, "fingerprint": self.next_model_fingerprint or "",
                    "dimensions": self.next_dimensions}
        return {"name": self.model, "fingerprint": self.model_fingerprint or "", "dimensions": self.dimensions}


_SELECT = """
    SELECT v.id, v.name, v.schema_name, v.table_name, v.text_column, v.embedding_column, v.next_column,
           v.key_columns, v.key_types, v.mode, v.dimensions, v.storage, v.index, v.model, v.model_fingerprint,
           v.next_model, v.next_model_fingerprint, v.next_dimensions,
           (SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'vector')
    FROM vecplug.vectorizer_columns v
"""


def _from_row(row) -> Vectorizer:
    values = list(row)
    values[7], values[8] = tuple(values[7] or ()), tuple(values[8] or ())
    return Vectorizer(*values)


def load_all(conn) -> list[Vectorizer]:
    """Every vectorizer of the database, by id. Raises VectorizerError when vecplug's tables cannot be read."""
    import psycopg

    try:
        with conn.transaction():
            return [_from_row(row) for row in conn.execute(_SELECT + " ORDER BY v.id").fetchall()]
    except psycopg.errors.UndefinedTable:
        raise VectorizerError(
            f"database {conn.info.dbname!r} has no vectorizers table: vecplug is not installed there, or is older "
            "than schema version 2. Run `vecplug pg install --dsn ...` first.") from None
    except psycopg.errors.InsufficientPrivilege:
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_catalog.pg_namespace "
                             "WHERE nspname = 'vecplug'").fetchone()
        raise VectorizerError(
            f"role {conn.info.user!r} may not read vecplug's vectorizer tables: run the worker as the role that "
            f"installed vecplug ({owner[0] if owner else '?'}) or a member of it.") from None


def load_one(conn, vectorizer_id: int, lock: str | None = None) -> Vectorizer | None:
    """One vectorizer; ``lock="SHARE"`` holds its row until the transaction ends (a re-embedding's swap waits)."""
    query = _SELECT + " WHERE v.id = %s"
    if lock:
        conn.execute(f"SELECT 1 FROM vecplug.vectorizers WHERE id = %s FOR {lock}", [vectorizer_id])
    row = conn.execute(query, [vectorizer_id]).fetchone()
    return _from_row(row) if row else None


def resolve(vectorizers: list[Vectorizer], wanted: str) -> Vectorizer:
    """The vectorizer named ``wanted``: its id, its name (``public.docs.embedding``), or ``table.column``/``table``."""
    wanted = wanted.strip()
    for vectorizer in vectorizers:
        names = {str(vectorizer.id), vectorizer.name}
        if vectorizer.exists:
            names |= {f"{vectorizer.schema}.{vectorizer.table}.{vectorizer.embedding_column}",
                      f"{vectorizer.table}.{vectorizer.embedding_column}"}
        if wanted in names:
            return vectorizer
    by_table = [v for v in vectorizers if v.exists and wanted in (v.table, f"{v.schema}.{v.table}")]
    if len(by_table) == 1:
        return by_table[0]
    known = ", ".join(f"{v.id} ({v.name})" for v in vectorizers) or "none"
    raise VectorizerError(f"no vectorizer {wanted!r}" + (" (the table has several: name the column)"
                                                         if by_table else "") + f"; there are: {known}")


def served_names(model) -> set[str]:
    """The names a model answers to: its spec's name and aliases, and a server's served name."""
    names = {model.spec.name, *model.spec.aliases}
    served = getattr(model, "served_name", None)
    if served:
        names.add(served)
    return names


def model_for(vectorizer: Vectorizer, model, next_column: bool = False):
    """``model`` cut to the vectorizer's size, after checking it makes the recorded vector space.

    Raises ModelMismatchError (through ``vecplug.check_same_space``) when the
    vectorizer records another fingerprint, or, before a fingerprint is
    pinned, another model name or more dimensions than the model has.
    """
    space = vectorizer.space(next_column)
    where = f"vectorizer {vectorizer.name}" + (" (its re-embedding column)" if next_column else "")
    if space["dimensions"] > model.spec.dimensions:
        raise ModelMismatchError(
            f"{where} stores {space['dimensions']}-dimension vectors; model {model.name!r} makes only "
            f"{model.spec.dimensions}: run the worker with the vectorizer's model ({space['name'] or 'see vecplug.status'}).")
    view = model.with_dimensions(space["dimensions"])
    if space["fingerprint"]:
        vecplug.check_same_space(space, view.spec, where=where, action="write to it with",
                                 hint="Run the worker with the vectorizer's model, or change the vectorizer's model "
                                      "with `vecplug pg reembed`.")
    elif space["name"] and space["name"] not in served_names(model):
        raise ModelMismatchError(
            f"{where} is for model {space['name']!r}, not {model.name!r}: run the worker with that model.")
    return view


# -- SQL --------------------------------------------------------------------------------------------------------
def _table(vectorizer: Vectorizer):
    from psycopg import sql

    return sql.Identifier(vectorizer.schema, vectorizer.table)


def _key_match(vectorizer: Vectorizer, table_alias: str, value_of) -> "sql.Composable":
    """``t.k1 = <value 0>::type1 AND ...``; ``value_of(i)`` gives the i-th key value's text expression."""
    from psycopg import sql

    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = ({})::{}").format(sql.Identifier(table_alias), sql.Identifier(column), value_of(index),
                                            sql.SQL(type_name))
        for index, (column, type_name) in enumerate(zip(vectorizer.key_columns, vectorizer.key_types)))


def lock_and_read_sql(vectorizer: Vectorizer):
    """Lock a batch of due queue rows (SKIP LOCKED) and read their rows' current text and its md5.

    Parameters: vectorizer id, limit. Rows: queue id, pk, attempts, text (None if the row is gone), md5.
    """
    from psycopg import sql

    text = sql.Identifier(vectorizer.text_column)
    return sql.SQL("""
        WITH locked AS (
            SELECT q.id, q.pk, q.attempts FROM vecplug.queue q
            WHERE q.vectorizer_id = %s AND (q.retry_after IS NULL OR q.retry_after <= now())
            ORDER BY q.id LIMIT %s FOR UPDATE SKIP LOCKED)
        SELECT l.id, l.pk, l.attempts, t.{text}::text, md5(t.{text}::text)
        FROM locked l LEFT JOIN {table} t ON {match} ORDER BY l.id
    """).format(text=text, table=_table(vectorizer),
                match=_key_match(vectorizer, "t", lambda i: sql.SQL("l.pk[{}]").format(sql.Literal(i + 1))))


def write_sql(vectorizer: Vectorizer, column: str):
    """Write vectors where the text is still the one embedded (its md5): a text changed meanwhile is not overwritten.

    Parameters (binary): one text[] per key column, the md5s (text[]), the vectors (vector[]).
    """
    from psycopg import sql

    keys = [sql.Identifier(f"k{index}") for index in range(len(vectorizer.key_columns))]
    arrays = sql.SQL(", ").join([sql.SQL("%b::text[]")] * (len(keys) + 1) + [sql.SQL("%b::{}.vector[]").format(
        sql.Identifier(vectorizer.vector_schema))])
    value = sql.SQL("x.e")
    if vectorizer.storage == "halfvec":
        value = sql.SQL("x.e::{}.halfvec").format(sql.Identifier(vectorizer.vector_schema))
    return sql.SQL("""
        UPDATE {table} AS t SET {column} = {value}
        FROM unnest({arrays}) AS x ({keys}, h, e)
        WHERE {match} AND md5(t.{text}::text) = x.h
    """).format(table=_table(vectorizer), column=sql.Identifier(column), value=value, arrays=arrays,
                keys=sql.SQL(", ").join(keys), text=sql.Identifier(vectorizer.text_column),
                match=_key_match(vectorizer, "t", lambda i: sql.SQL("x.{}").format(keys[i])))


def forget_failed_sql(vectorizer: Vectorizer):
    """Delete the failed rows of these keys. Parameters: one text[] per key column, then the vectorizer id."""
    from psycopg import sql

    count = len(vectorizer.key_columns)
    keys = [sql.Identifier(f"k{index}") for index in range(count)]
    return sql.SQL("DELETE FROM vecplug.failed f USING unnest({arrays}) AS x ({keys}) "
                   "WHERE f.vectorizer_id = %s AND f.pk = ARRAY[{values}]").format(
        arrays=sql.SQL(", ").join([sql.SQL("%s::text[]")] * count), keys=sql.SQL(", ").join(keys),
        values=sql.SQL(", ").join(sql.SQL("x.{}").format(key) for key in keys))
