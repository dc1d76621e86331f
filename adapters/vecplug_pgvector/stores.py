"""A table with a vector column as a ``vecplug.stores.VectorStore``: what ``vecplug search``, ``recommend``,
``cluster`` and ``dedup`` use with ``--dsn --table``.

Security first: the store works with the CALLER's connection and rights
(nothing here is SECURITY DEFINER), so a role reads and writes only what
PostgreSQL already lets it; a refusal is PostgreSQL's permission error,
said in one line (``StorePermissionError``). Nothing depends on session
settings: the table is found once in the catalog and named schema-qualified
(``sql.Identifier``) from then on, vectors travel in pgvector's binary
format (no text parsing that could lose digits), and ids that are not
integers travel as text under the vectorizer key settings
(``vectorizers.KEY_SETTINGS``), as the triggers write them.

Columns: the ones the user names, else the table's vectorizer's (vector
column, source text column, key), else ``embedding``, ``body`` (no text if
absent) and the primary key. An id column must identify a row alone (a
one-column primary key or unique index). Chunked vectorizers are refused:
their vectors are per passage, keyed by (row key, ``chunk_index``), not
one per row (decision 0096).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from vecplug.errors import InvalidSettingError, VecplugError
from vecplug.stores import Hit, StoredItem, StoreSelection, UnknownIdsError

from .columns import describe, recorded_model
from .connection import connect
from .store_tables import StoreColumns, find_columns, find_table
from .vectorizers import use_key_settings

if TYPE_CHECKING:
    import numpy as np

DEFAULT_ITEMS_BATCH = 1000
# hnsw.ef_search of a store's queries (at least the rows asked for). Not pgvector's 40: dedup must find a
# row's near-duplicate, and at 40 the index missed 4 of 300 planted pairs (cosine 0.998) from both sides in
# 30,000 rows of 768 dimensions; at 100 none, for 1.8x the time per query (scripts/bench_stores_pg.py).
STORE_EF_SEARCH = 100


class StorePermissionError(VecplugError, PermissionError):
    """PostgreSQL refused the calling role (no right on the table or column): its message, in one line."""


def open_store(selection: StoreSelection):
    """The hook's work: a ``PostgresStore`` for ``--dsn --table``, None when the selection is not PostgreSQL's."""
    if selection.dsn is None:  # "" is libpq's PG* environment variables: PostgreSQL's too
        return None
    if not selection.table:
        raise InvalidSettingError("--dsn names a database but no table: add --table TABLE (the table whose "
                                  "vectors to use; schema.table for another schema)")
    conn = connect(selection.dsn, "store")
    try:
        return PostgresStore(conn, selection.table, column=selection.column, text_column=selection.text_column,
                             id_column=selection.id_column, owns_connection=True)
    except BaseException:
        conn.close()
        raise


class PostgresStore:
    """The rows of one table that hold a vector, through the caller's connection (see the module docstring)."""

    def __init__(self, conn, table, *, column: str | None = None, text_column: str | None = None,
                 id_column: str | None = None, owns_connection: bool = False):
        self.conn = conn
        self.owns_connection = owns_connection
        with _permission_errors(), conn.transaction():
            schema, name = find_table(conn, table)
            self.columns: StoreColumns = find_columns(conn, schema, name, column, text_column, id_column)
            self.info = describe(conn, self.columns.table, (schema, name), self.columns.vector, [])
            _register_vector_type(conn, self.info)
        self.description = f"table {self.columns.display}"

    # -- the Protocol -----------------------------------------------------------------------------------------

    def recorded_model(self) -> dict | None:
        """The vectorizer's model (name, fingerprint, dimensions), else the column's record, else None."""
        if self.columns.vectorizer_model:
            return dict(self.columns.vectorizer_model)
        with _permission_errors(), self.conn.transaction():
            return recorded_model(self.conn, self.info["oid"], self.columns.vector)

    def count(self) -> int:
        from psycopg import sql

        query = sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT NULL").format(
            self.columns.table, sql.Identifier(self.columns.vector))
        with _permission_errors(), self.conn.transaction():
            return self.conn.execute(query).fetchone()[0]

    def nearest(self, vector, k: int, *, where: str | None = None, exclude: Sequence = ()) -> list[Hit]:
        """``ORDER BY column <=> q LIMIT k`` (scores cosine), which the column's cosine HNSW index serves.

        An index of another operator class is not used: for vectors that are
        not unit length its order is not cosine's, and a store answers by
        cosine (vectorizers make cosine indexes).

        ``where`` is an SQL condition on the table's columns, as
        ``vecplug_pgvector.search`` takes it (the caller's own SQL, run with
        the caller's rights). Excluded ids are asked for as extra rows and
        dropped here, so the index still serves the query.
        """
        import numpy as np

        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, not {k!r}")
        if where is not None and not isinstance(where, str):
            raise TypeError("where must be an SQL condition string")
        excluded = {self._normal_id(value) for value in exclude}
        limit = k + len(excluded)
        query, arguments = self._nearest_query(np.asarray(vector, dtype=np.float32), limit, where)
        with _permission_errors(), self.conn.transaction(), self.conn.cursor(binary=True) as cursor:
            self._index_settings(cursor, limit, filtered=bool(where))
            rows = cursor.execute(query, arguments).fetchall()
        hits = [Hit(row_id, float(score), text) for row_id, text, score in rows if row_id not in excluded]
        return hits[:k]

    def vectors(self, ids: Sequence) -> dict:
        """The stored vectors of ``ids`` (unit length, float32); ``UnknownIdsError`` lists every id not stored."""
        from psycopg import sql

        wanted = [self._normal_id(value) for value in ids]
        query = sql.SQL("SELECT {id}, {vector} FROM {table} WHERE {key} = ANY({ids}) AND {vector} IS NOT NULL").format(
            id=self._id_expression(), vector=sql.Identifier(self.columns.vector), table=self.columns.table,
            key=sql.Identifier(self.columns.id), ids=self._ids_parameter("ids"))
        with _permission_errors(), self.conn.transaction(), self.conn.cursor(binary=True) as cursor:
            use_key_settings(self.conn)
            found = {row_id: _unit(value) for row_id, value in
                     cursor.execute(query, {"ids": self._ids_argument(wanted)}).fetchall()}
        missing = [value for value in dict.fromkeys(wanted) if value not in found]
        if missing:
            raise UnknownIdsError(f"{self.description} has no row with a vector for id(s) {_listed(missing)} "
                                  f"(ids are values of column {self.columns.id!r})")
        return found

    def recommend(self, positive: Sequence, negative: Sequence, k: int) -> list[Hit]:
        """vecplug's strategy for stores without a recommend of their own (Qdrant's average vector), never a
        given id; ids as the store returns them (``"7"`` from a command line is 7 for an integer key)."""
        from vecplug.analysis.recommending import recommend_by_average

        return recommend_by_average(self, [self._normal_id(value) for value in positive],
                                    [self._normal_id(value) for value in negative or ()], k)

    def items(self, batch_size: int = DEFAULT_ITEMS_BATCH) -> Iterator[list[StoredItem]]:
        """Every row with a vector through a server-side cursor: at most ``batch_size`` rows in memory.

        The cursor lives in its own transaction on this connection;
        ``nearest`` may be called between batches (dedup does).
        """
        from psycopg import sql

        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        query = sql.SQL("SELECT {id}, {text}, {vector} FROM {table} WHERE {vector} IS NOT NULL").format(
            id=self._id_expression(), text=self._text_expression(), vector=sql.Identifier(self.columns.vector),
            table=self.columns.table)
        with _permission_errors(), self.conn.transaction():
            use_key_settings(self.conn)
            with self.conn.cursor("vecplug_store_items", binary=True) as cursor:
                cursor.itersize = batch_size
                cursor.execute(query)
                while True:
                    rows = cursor.fetchmany(batch_size)
                    if not rows:
                        break
                    yield [StoredItem(row_id, _unit(value), text) for row_id, text, value in rows]

    def write_labels(self, field: str, labels) -> int:
        """``field`` (an integer column, added if missing, as the caller) set per id; all or nothing.

        One transaction of batched ``UPDATE ... FROM unnest(ids, labels)``:
        an unknown id rolls everything back (``UnknownIdsError``). Updating
        a column that is not the vectorizer's text leaves the queue alone
        (its triggers compare the text before queueing).
        """
        from .store_labels import write_labels

        return write_labels(self, field, labels)

    def close(self) -> None:
        if self.owns_connection and not self.conn.closed:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- helpers ----------------------------------------------------------------------------------------------

    def _nearest_query(self, vector, limit: int, where: str | None):
        """(query, arguments) of ``nearest``: the cosine distance in ORDER BY, so a cosine index serves it."""
        from psycopg import sql

        cosine = sql.SQL("{} OPERATOR({}.<=>) CAST(%(q)s AS {})").format(
            sql.Identifier(self.columns.vector), sql.Identifier(self.info["type_schema"]), self._vector_type())
        condition = sql.SQL("{} IS NOT NULL").format(sql.Identifier(self.columns.vector))
        if where:
            condition = sql.SQL("{} AND ({})").format(condition, sql.SQL(where))
        query = sql.SQL("SELECT {id}, {text}, 1 - ({cosine}) FROM {table} WHERE {condition} "
                        "ORDER BY {cosine} LIMIT {limit}").format(
            id=self._id_expression(), text=self._text_expression(), cosine=cosine, table=self.columns.table,
            condition=condition, limit=sql.Literal(limit))
        return query, {"q": vector}

    def _vector_type(self):
        from psycopg import sql

        return sql.Identifier(self.info["type_schema"], self.info["type_name"])

    def _index_settings(self, cursor, limit: int, filtered: bool) -> None:
        """``SET LOCAL`` what the index needs for ``limit`` rows. ``hnsw.ef_search`` is at least
        STORE_EF_SEARCH and the limit, or the session's own when higher (a role or ``PGOPTIONS`` may ask for
        more recall, never for less)."""
        if self.info["index_distance"] != "cosine":
            return
        if self.info["index_method"] == "hnsw":
            cursor.execute("SELECT set_config('hnsw.ef_search', greatest(%s, current_setting('hnsw.ef_search', "
                           "true)::integer)::text, true)", [max(limit, STORE_EF_SEARCH)])
            if filtered:
                cursor.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
        elif self.info["index_method"] == "ivfflat" and filtered:
            cursor.execute("SELECT set_config('ivfflat.iterative_scan', 'relaxed_order', true)")

    def _id_expression(self):
        """Integer keys as they are; any other key as text (under the key settings) so ids print and round-trip."""
        from psycopg import sql

        key = sql.Identifier(self.columns.id)
        return key if self.columns.integer_id else sql.SQL("CAST({} AS text)").format(key)

    def _text_expression(self):
        from psycopg import sql

        if self.columns.text is None:
            return sql.SQL("CAST(NULL AS text)")
        return sql.SQL("CAST({} AS text)").format(sql.Identifier(self.columns.text))

    def _ids_parameter(self, name: str):
        """The ids of a query, as an array of the key column's own type (cast from text[] or bigint[])."""
        from psycopg import sql

        if self.columns.integer_id:
            return sql.Placeholder(name)
        return sql.SQL("CAST(CAST({} AS text[]) AS {}[])").format(
            sql.Placeholder(name), sql.Identifier(self.columns.id_type_schema, self.columns.id_type_name))

    def _ids_argument(self, ids: list):
        from psycopg.types.numeric import Int8

        return [Int8(value) for value in ids] if self.columns.integer_id else [str(value) for value in ids]

    def _normal_id(self, value):
        """An id as the store returns it: an int for integer keys (``"7"`` from a command line is 7), else text."""
        if self.columns.integer_id:
            if isinstance(value, bool):
                raise UnknownIdsError(f"{value!r} is not an id of {self.description}: its ids are integers")
            try:
                return int(value)
            except (TypeError, ValueError):
                raise UnknownIdsError(f"{value!r} is not an id of {self.description}: its ids are integers "
                                      f"(column {self.columns.id!r})") from None
        return str(value)


def recommend(conn, table, positive: Sequence, negative: Sequence = (), k: int = 10, *, column: str | None = None,
              id_column: str | None = None, text_column: str | None = None) -> list[Hit]:
    """Rows like the ``positive`` ids and unlike the ``negative`` ones, best first, never one of them.

    ``vecplug.stores.Hit`` s (``id``, ``score``: cosine similarity to the
    recommendation vector, ``text``; ``to_dict()``) from the stored vectors,
    no model needed. ``table`` is a name or a (schema, table) pair; ``conn``
    a psycopg 3 connection (used with its role's rights) or a DSN.
    pgvector has no recommend: the strategy is vecplug's for such stores
    (``vecplug.analysis.recommending``, Qdrant's average vector:
    ``mean(positive) + (mean(positive) - mean(negative))``).
    """
    if isinstance(conn, str):
        with connect(conn, "pg recommend") as owned:
            return recommend(owned, table, positive, negative, k, column=column, id_column=id_column,
                             text_column=text_column)
    store = PostgresStore(conn, table, column=column, text_column=text_column, id_column=id_column)
    return store.recommend(list(positive), list(negative), k)


def _register_vector_type(conn, info: dict) -> None:
    """pgvector's psycopg adapter for the column's type, found by its schema (not by search_path)."""
    from psycopg import sql
    from psycopg.types import TypeInfo

    found = TypeInfo.fetch(conn, sql.Identifier(info["type_schema"], info["type_name"]))
    if info["type_name"] == "halfvec":
        from pgvector.psycopg.halfvec import register_halfvec_info

        register_halfvec_info(conn, found)
        found = TypeInfo.fetch(conn, sql.Identifier(info["type_schema"], "vector"))
    from pgvector.psycopg.vector import register_vector_info

    register_vector_info(conn, found)


def _unit(value) -> "np.ndarray":
    import numpy as np

    vector = np.asarray(value.to_numpy(), dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _listed(values: list) -> str:
    shown = ", ".join(repr(value) for value in values[:20])
    return shown + (f" and {len(values) - 20} more" if len(values) > 20 else "")


class _permission_errors:
    """PostgreSQL's permission refusal (SQLSTATE 42501) as ``StorePermissionError``: its own message, one line."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        import psycopg

        if isinstance(error, psycopg.errors.InsufficientPrivilege):
            message = " ".join(str(error).split())
            raise StorePermissionError(f"PostgreSQL refused: {message} (the store works with the connecting "
                                       "role's rights: ask the table's owner for them, or connect as a role "
                                       "that has them)") from None
        return False
