"""Vectorizers as the worker sees them: their description, their SQL, and which model may write to them.

A vectorizer is a row of ``vecplug.vectorizers`` (made by
``vecplug.create_vectorizer`` in SQL); ``vecplug.vectorizer_columns`` gives
it with the current names of its table and columns (stored by number, so
renames are followed). Every identifier here goes through
``psycopg.sql.Identifier``; primary key values travel as text (each type's
own output form, written under ``KEY_SETTINGS``) and are cast back with the
key column's own type under the same settings, so a key never depends on a
session's DateStyle, TimeZone or float digits.

The worker reads and writes a table as the role it connects as, so the
table's own code (triggers, casts, policies) runs with that role's rights:
``refusal`` (``vecplug.worker_refusal``) says when that role holds rights
the table's owner lacks, and such a vectorizer is not served.
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
    refusal: str | None = None      # why the connected role may not serve it (vecplug.worker_refusal), or None

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


# {refusal}: vecplug.worker_refusal for the connected role, or NULL where the caller has it already
_SELECT = """
    SELECT v.id, v.name, v.schema_name, v.table_name, v.text_column, v.embedding_column, v.next_column,
           v.key_columns, v.key_types, v.mode, v.dimensions, v.storage, v.index, v.model, v.model_fingerprint,
           v.next_model, v.next_model_fingerprint, v.next_dimensions,
           (SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'vector'),
           {refusal}
    FROM vecplug.vectorizer_columns v
    WHERE (NOT v.table_exists OR pg_catalog.has_any_column_privilege(v.source, 'SELECT, UPDATE'))
"""

# The settings keys are written under (the trigger functions' SET clauses in
# sql/core/21_vectorizer_triggers.sql) and read back under (SET LOCAL).
KEY_SETTINGS = {"DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "TimeZone": "UTC", "extra_float_digits": "3",
                "bytea_output": "hex", "lc_monetary": "C"}


def use_key_settings(conn) -> None:
    """Within the current transaction, read keys back as the triggers wrote them."""
    for name, value in KEY_SETTINGS.items():
        conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", [name, value])


def _from_row(row) -> Vectorizer:
    values = list(row)
    values[7], values[8] = tuple(values[7] or ()), tuple(values[8] or ())
    return Vectorizer(*values)


def load_all(conn) -> list[Vectorizer]:
    """Every vectorizer of the database, by id. Raises VectorizerError when vecplug's tables cannot be read."""
    import psycopg

    try:
        with conn.transaction():
            query = _SELECT.format(refusal="vecplug.worker_refusal(v.id)") + " ORDER BY v.id"
            return [_from_row(row) for row in conn.execute(query).fetchall()]
    except psycopg.errors.UndefinedFunction:
        raise VectorizerError(
            f"database {conn.info.dbname!r} has vecplug older than schema version 3: run `vecplug pg install "
            "--dsn ...` to upgrade it (its vectorizers keep their tables, queues and vectors).") from None
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


def load_one(conn, vectorizer_id: int) -> Vectorizer | None:
    """One vectorizer (None if gone or not visible to this role), for a batch: without ``refusal``, which
    ``load_all`` gave the worker already and ``vecplug.claim_batch`` checks again (each batch would pay twice)."""
    row = conn.execute(_SELECT.format(refusal="NULL") + " AND v.id = %s", [vectorizer_id]).fetchone()
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


def _unnest_keys(vectorizer: Vectorizer):
    """``unnest(%s::int[], %s::text[], ...) AS x (i, k0, ...)``: a position, then one text[] per key column."""
    from psycopg import sql

    keys = [sql.Identifier(f"k{index}") for index in range(len(vectorizer.key_columns))]
    return keys, sql.SQL("unnest(%s::int[], {arrays}) AS x (i, {keys})").format(
        arrays=sql.SQL(", ").join([sql.SQL("%s::text[]")] * len(keys)), keys=sql.SQL(", ").join(keys))


def read_sql(vectorizer: Vectorizer):
    """The current text (and its md5) of rows by key; a key that names no row gives no line.

    Parameters: positions (int[]), then one text[] per key column. Rows: position, text, md5.
    """
    from psycopg import sql

    keys, source = _unnest_keys(vectorizer)
    text = sql.Identifier(vectorizer.text_column)
    return sql.SQL("SELECT x.i, t.{text}::text, md5(t.{text}::text) FROM {source} JOIN {table} t ON {match}").format(
        text=text, source=source, table=_table(vectorizer),
        match=_key_match(vectorizer, "t", lambda i: sql.SQL("x.{}").format(keys[i])))


def round_trip_sql(vectorizer: Vectorizer):
    """Positions of keys that do not read back as themselves (cast to the key's type, then to text).

    Such a key matching no row proves nothing: it was not written as this
    worker reads it. Parameters as ``read_sql``.
    """
    from psycopg import sql

    keys, source = _unnest_keys(vectorizer)
    differs = sql.SQL(" OR ").join(
        sql.SQL("(x.{key}::{type})::text IS DISTINCT FROM x.{key}").format(key=key, type=sql.SQL(type_name))
        for key, type_name in zip(keys, vectorizer.key_types))
    return sql.SQL("SELECT x.i FROM {source} WHERE {differs}").format(source=source, differs=differs)


def write_sql(vectorizer: Vectorizer, column: str):
    """Write vectors where the text is still the one embedded (its md5): a text changed meanwhile is not overwritten.

    Parameters (binary): one text[] per key column, the md5s (text[]), the vectors (vector[]).
    Returns the keys written, so a row the table's own code skipped can be told from one that changed.
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
        RETURNING {returned}
    """).format(table=_table(vectorizer), column=sql.Identifier(column), value=value, arrays=arrays,
                keys=sql.SQL(", ").join(keys), text=sql.Identifier(vectorizer.text_column),
                match=_key_match(vectorizer, "t", lambda i: sql.SQL("x.{}").format(keys[i])),
                returned=sql.SQL(", ").join(sql.SQL("x.{}").format(key) for key in keys))
