"""Vectorizers as the worker sees them: their description, and which model may write to them.

A vectorizer is a row of ``vecplug.vectorizers`` (made by
``vecplug.create_vectorizer`` in SQL); ``vecplug.vectorizer_columns`` gives
it with the current names of its table and columns (stored by number, so
renames are followed). Primary key values travel as text (each type's own
output form, written under ``KEY_SETTINGS``) and are cast back with the key
column's own type under the same settings, so a key never depends on a
session's DateStyle, TimeZone or float digits. The SQL that reads and
writes a vectorizer's table is in ``statements``.

The worker reads and writes a table as the role it connects as, so the
table's own code (triggers, casts, policies) runs with that role's rights:
``refusal`` (``vecplug.worker_refusal``) says when that role holds rights
the table's owner lacks, and such a vectorizer is not served.
"""
from __future__ import annotations

import dataclasses

import vecplug
from vecplug.errors import ModelMismatchError, VecplugError

from . import statements


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
    # A chunked vectorizer (chunk_tokens set) writes each text's chunks into a destination table, whose
    # vector column is ``embedding_column``; its key columns share the source key's names when made.
    destination_schema: str | None = None
    destination_table: str | None = None
    destination_keys: tuple[str, ...] = ()
    chunk_tokens: int | None = None
    chunk_overlap: int = 0
    late_chunking: bool = False
    format: str | None = None       # the template of the text embedded (formats.py), or None: the text itself
    format_columns: tuple[str, ...] = ()  # current names of the columns it names, in formats.template_names order

    @property
    def chunked(self) -> bool:
        return self.chunk_tokens is not None

    @property
    def exists(self) -> bool:
        return (self.table is not None and self.text_column is not None and self.embedding_column is not None
                and (not self.chunked or self.destination_table is not None))

    @property
    def target(self) -> vecplug.Target:
        """What ``vecplug_before_ingest`` plugins are told: ``Target("postgres", "schema.table")``.

        Its records are the table's rows: a plugin may change or drop them, not add any.
        """
        return vecplug.Target("postgres", f"{self.schema}.{self.table}", accepts_new_ids=False)

    def space(self, next_column: bool = False) -> dict:
        """The recorded vector space, as ``vecplug.check_same_space`` reads it."""
        if next_column:
            return {"name": self.next_model, "fingerprint": self.next_model_fingerprint or "",
                    "dimensions": self.next_dimensions}
        return {"name": self.model, "fingerprint": self.model_fingerprint or "", "dimensions": self.dimensions}


# The settings keys are written under (the trigger functions' SET clauses in
# sql/core/21_vectorizer_triggers.sql) and read back under (SET LOCAL).
KEY_SETTINGS = {"DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "TimeZone": "UTC", "extra_float_digits": "3",
                "bytea_output": "hex", "lc_monetary": "C"}


def use_key_settings(conn) -> None:
    """Within the current transaction, read keys back as the triggers wrote them."""
    for name, value in KEY_SETTINGS.items():
        conn.execute(statements.SET_LOCAL, [name, value])


def _from_row(row) -> Vectorizer:
    values = list(row)
    for tuple_field in (7, 8, 22, 27):  # key_columns, key_types, destination_keys, format_columns
        values[tuple_field] = tuple(values[tuple_field] or ())
    return Vectorizer(*values)


def load_all(conn) -> list[Vectorizer]:
    """Every vectorizer of the database, by id. Raises VectorizerError when vecplug's tables cannot be read."""
    import psycopg

    try:
        with conn.transaction():
            return [_from_row(row) for row in conn.execute(statements.ALL_VECTORIZERS).fetchall()]
    except psycopg.errors.UndefinedFunction:
        raise VectorizerError(
            f"database {conn.info.dbname!r} has vecplug older than schema version 3: run `vecplug pg install "
            "--dsn ...` to upgrade it (its vectorizers keep their tables, queues and vectors).") from None
    except psycopg.errors.UndefinedTable:
        raise VectorizerError(
            f"database {conn.info.dbname!r} has no vectorizers table: vecplug is not installed there, or is older "
            "than schema version 2. Run `vecplug pg install --dsn ...` first.") from None
    except psycopg.errors.InsufficientPrivilege:
        owner = conn.execute(statements.SCHEMA_OWNER).fetchone()
        raise VectorizerError(
            f"role {conn.info.user!r} may not read vecplug's vectorizer tables: run the worker as the role that "
            f"installed vecplug ({owner[0] if owner else '?'}) or a member of it.") from None


def load_one(conn, vectorizer_id: int) -> Vectorizer | None:
    """One vectorizer (None if gone or not visible to this role), for a batch: without ``refusal``, which
    ``load_all`` gave the worker already and ``vecplug.claim_batch`` checks again (each batch would pay twice)."""
    row = conn.execute(statements.ONE_VECTORIZER, [vectorizer_id]).fetchone()
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
    if model.served_name:
        names.add(model.served_name)
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

