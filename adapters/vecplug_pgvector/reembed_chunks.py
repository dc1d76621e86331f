"""``vecplug pg reembed`` of a chunked vectorizer: every row cut and embedded again into a shadow table.

``vecplug.begin_reembed`` makes ``<destination>_vecplug_next`` (the
destination's shape, the new model's vector column, and
``vecplug_text_md5``). Each row filled there gets its chunks and one marker
row (``chunk_index`` -1, no vector) holding the md5 of the text it was cut
from (``statements.text_guard``), so the walks find the rows still to do,
or whose text changed since, by comparing md5s: nothing changes for writers
or workers meanwhile, and an interrupted run resumes where it stopped.
Queries keep answering from the old destination until the swap: one
transaction that locks writers out, walks what changed last, drops the
chunks of rows whose text changed or went, and ``vecplug.finish_reembed``
swaps the tables (rows the new model could not embed are queued for workers
of the new model, as for single vectors).
"""
from __future__ import annotations

import dataclasses

from . import statements
from . import vectorizers as vz

from .batch import Row, write_in_halves
from .reembed import walk_pages
from .chunks import ChunkWriter

MARKER = -1  # the chunk_index of a row's marker in the shadow table


def shadow_of(conn, vectorizer: vz.Vectorizer) -> vz.Vectorizer:
    """The vectorizer as the shadow table sees it: its destination, vector size and model are the new ones."""
    schema, table = conn.execute(
        "SELECT n.nspname, c.relname FROM vecplug.vectorizers v JOIN pg_catalog.pg_class c ON c.oid = v.next_destination "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE v.id = %s", [vectorizer.id]).fetchone()
    return dataclasses.replace(vectorizer, destination_schema=schema, destination_table=table,
                               embedding_column=vectorizer.next_column, dimensions=vectorizer.next_dimensions,
                               model=vectorizer.next_model, model_fingerprint=vectorizer.next_model_fingerprint)


def walk(conn, runner, vectorizer: vz.Vectorizer, shadow: vz.Vectorizer, view, report, bar,
         transaction: bool = True) -> int:
    """One pass in key order over the rows with text whose marker is missing or stale; returns rows done."""
    return walk_pages(conn, lambda after: rows_to_chunk(vectorizer, shadow, after=after),
                      lambda query, parameters: _chunk_batch(conn, runner, shadow, view, report, query, parameters),
                      runner.batch_size, report, bar, transaction)


def _chunk_batch(conn, runner, shadow, view, report, query, parameters) -> list[Row]:
    """A page of rows chunked into the shadow table; a row that fails alone is left without a marker."""
    vz.use_key_settings(conn)
    rows = [Row(tuple(key), [], 0, text, md5, tuple(values or ()))
            for key, text, md5, values in conn.execute(query, parameters).fetchall()]
    if rows:
        _write(conn, ChunkWriter(runner), shadow, view, rows, report)
    return rows


def _write(conn, writer: ChunkWriter, shadow, view, rows: list[Row], report) -> None:
    """Chunks and markers of ``rows`` in savepoints; a row that fails alone stays unmarked (queued at the swap)."""
    def write(part: list[Row]) -> int:
        written, _ = writer._embed_and_write(shadow, view, part)
        conn.execute(insert_markers(shadow), [*([row.key[index] for row in part]
                                                for index in range(len(shadow.key_columns))),
                                              [row.md5 for row in part]])
        return written

    def counted(written: int) -> None:
        report.embedded += written

    def failed(row: Row, error: Exception) -> None:
        report.failed += 1

    truncated_before = view.truncated_count
    write_in_halves(conn, rows, write, counted, failed)
    report.truncated += view.truncated_count - truncated_before


def rows_to_chunk(vectorizer: vz.Vectorizer, shadow: vz.Vectorizer, after: bool, limit: bool = True):
    """A page of rows with text and no marker of their current text, in key order (as
    ``statements.rows_without_shadow_vector``: key as text[], text, md5, the format's values)."""
    from psycopg import sql

    keys = [sql.SQL("t.{}").format(sql.Identifier(column)) for column in vectorizer.key_columns]
    condition = sql.SQL("t.{text} IS NOT NULL AND NOT EXISTS (SELECT FROM {shadow} s WHERE {match} "
                        "AND s.chunk_index = {marker} AND s.vecplug_text_md5 = {guard})").format(
        text=sql.Identifier(vectorizer.text_column), shadow=_shadow_table(shadow), match=_match(shadow),
        marker=sql.Literal(MARKER), guard=statements.text_guard(vectorizer, "t"))
    if after:
        condition = sql.SQL("{} AND ({}) > ({})").format(condition, sql.SQL(", ").join(keys), sql.SQL(", ").join(
            sql.SQL("(%s)::{}").format(sql.SQL(type_name)) for type_name in vectorizer.key_types))
    return sql.SQL("SELECT ARRAY[{texts}], t.{text}::text, {guard}, ARRAY[{values}]::text[] FROM {table} t "
                   "WHERE {condition} ORDER BY {keys}{limit}").format(
        texts=sql.SQL(", ").join(sql.SQL("{}::text").format(key) for key in keys),
        text=sql.Identifier(vectorizer.text_column), guard=statements.text_guard(vectorizer, "t"),
        values=sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(column))
                                  for column in vectorizer.format_columns),
        table=sql.Identifier(vectorizer.schema, vectorizer.table), condition=condition,
        keys=sql.SQL(", ").join(keys), limit=sql.SQL(" LIMIT %s" if limit else ""))


def count_to_chunk(vectorizer: vz.Vectorizer, shadow: vz.Vectorizer):
    """How many rows ``rows_to_chunk`` has in all (the progress total)."""
    from psycopg import sql

    return sql.SQL("SELECT count(*) FROM ({}) AS rows").format(rows_to_chunk(vectorizer, shadow, False, limit=False))


def insert_markers(shadow: vz.Vectorizer):
    """The marker of each row (parameters: one text[] per key column, then the md5s), its earlier one replaced."""
    from psycopg import sql

    names = [sql.Identifier(f"k{index}") for index in range(len(shadow.key_columns))]
    columns = sql.SQL(", ").join(sql.Identifier(column) for column in shadow.destination_keys)
    values = sql.SQL(", ").join(sql.SQL("(x.{})::{}").format(name, sql.SQL(type_name))
                                for name, type_name in zip(names, shadow.key_types))
    return sql.SQL("INSERT INTO {shadow} ({columns}, chunk_index, chunk_start, chunk_end, chunk, vecplug_text_md5) "
                   "SELECT {values}, {marker}, 0, 0, '', x.h FROM unnest({arrays}, %s::text[]) AS x ({names}, h) "
                   "ON CONFLICT ({columns}, chunk_index) DO UPDATE SET vecplug_text_md5 = EXCLUDED.vecplug_text_md5"
                   ).format(shadow=_shadow_table(shadow), columns=columns, values=values, marker=sql.Literal(MARKER),
                            arrays=sql.SQL(", ").join([sql.SQL("%s::text[]")] * len(names)),
                            names=sql.SQL(", ").join(names))


def drop_stale(vectorizer: vz.Vectorizer, shadow: vz.Vectorizer):
    """Delete the shadow chunks of rows whose text changed (or went NULL) since they were cut (at the swap,
    writers locked out: those rows failed the last walk and are queued for the new model's workers)."""
    from psycopg import sql

    return sql.SQL("DELETE FROM {shadow} s WHERE EXISTS (SELECT FROM {shadow} m JOIN {table} t ON {join} "
                   "WHERE m.chunk_index = {marker} AND {same_key} "
                   "AND (t.{text} IS NULL OR m.vecplug_text_md5 IS DISTINCT FROM {guard}))").format(
        shadow=_shadow_table(shadow), table=sql.Identifier(vectorizer.schema, vectorizer.table),
        join=sql.SQL(" AND ").join(sql.SQL("m.{} = t.{}").format(sql.Identifier(d), sql.Identifier(k))
                                   for d, k in zip(shadow.destination_keys, vectorizer.key_columns)),
        same_key=sql.SQL(" AND ").join(sql.SQL("m.{0} = s.{0}").format(sql.Identifier(d))
                                       for d in shadow.destination_keys),
        marker=sql.Literal(MARKER), text=sql.Identifier(vectorizer.text_column),
        guard=statements.text_guard(vectorizer, "t"))


def _shadow_table(shadow: vz.Vectorizer):
    from psycopg import sql

    return sql.Identifier(shadow.destination_schema, shadow.destination_table)


def _match(shadow: vz.Vectorizer):
    from psycopg import sql

    return sql.SQL(" AND ").join(sql.SQL("s.{} = t.{}").format(sql.Identifier(d), sql.Identifier(k))
                                 for d, k in zip(shadow.destination_keys, shadow.key_columns))
