"""Every SQL statement the worker and ``vecplug pg reembed`` run, by name, each with whose rights it runs under.

``worker.py``, ``batch.py`` and ``reembed.py`` are policy (claim, read,
embed, write, finish, retry, back off); this module is the SQL they run,
so it can be reviewed on its own. Two kinds of statement:

- vecplug's own tables, reached only through the worker API of
  ``sql/core/23_worker_api.sql`` (and ``22_reembed.sql``). "as vecplug's
  owner": a SECURITY DEFINER function, which first checks that the session's
  role may serve the vectorizer (``vecplug._authorize_worker``) and touches
  vecplug's tables only, keys as text. "as the worker": a plain read of a
  view or catalog, with the connected role's rights.
- the user's table: functions below build them per vectorizer as psycopg
  ``sql.Composed`` (identifiers vary; each goes through ``sql.Identifier``,
  type names are ``format_type`` output from ``vecplug.vectorizer_columns``).
  They always run as the worker, so the table's own code (triggers, casts,
  policies) runs with that role's rights, never vecplug's; a worker serves
  a table only when its owner holds every right of that role
  (``vecplug.worker_refusal``).

Parameters are ``%s`` placeholders (``%b``: binary), in the order each comment gives.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg import sql

    from .vectorizers import Vectorizer

# -- vecplug's own: the vectorizers and their queues --------------------------------------------------------------

# The channel the queueing triggers pg_notify (sql/core/21_vectorizer_triggers.sql) and the worker listens on.
LISTEN_CHANNEL = "vecplug_queue"
# Wake up on queued work (a connection of its own). As the worker.
LISTEN = f"LISTEN {LISTEN_CHANNEL}"

# {refusal}: vecplug.worker_refusal for the connected role, or NULL where the caller has it already.
_VECTORIZERS = """
    SELECT v.id, v.name, v.schema_name, v.table_name, v.text_column, v.embedding_column, v.next_column,
           v.key_columns, v.key_types, v.mode, v.dimensions, v.storage, v.index, v.model, v.model_fingerprint,
           v.next_model, v.next_model_fingerprint, v.next_dimensions,
           (SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'vector'),
           {refusal},
           d.schema_name, d.table_name, d.key_columns, v.chunk_tokens, v.chunk_overlap, v.late_chunking, v.format,
           vecplug._format_columns(v)
    FROM vecplug.vectorizer_columns v LEFT JOIN LATERAL vecplug._destination(v) d ON true
    WHERE (NOT v.table_exists OR pg_catalog.has_any_column_privilege(v.source, 'SELECT, UPDATE'))
"""
# Every vectorizer whose table this role may read and write (or whose table is gone), each with why this
# role may not serve it (or NULL), by id; columns in the order of vectorizers.Vectorizer's fields. As the worker (vecplug.vectorizer_columns is readable by all).
ALL_VECTORIZERS = _VECTORIZERS.format(refusal="vecplug.worker_refusal(v.id)") + " ORDER BY v.id"
# One vectorizer by id (%s), without the refusal (claim_batch checks it again). As the worker.
ONE_VECTORIZER = _VECTORIZERS.format(refusal="NULL") + " AND v.id = %s"
# Who owns schema vecplug (named when this role may not read the vectorizers). As the worker.
SCHEMA_OWNER = "SELECT nspowner::regrole::text FROM pg_catalog.pg_namespace WHERE nspname = 'vecplug'"
# One setting (name, value) for the rest of this transaction: keys are read under the settings they were
# written under (vectorizers.KEY_SETTINGS). As the worker.
SET_LOCAL = "SELECT pg_catalog.set_config(%s, %s, true)"

# Lock up to (batch size) due queue rows of (vectorizer id), SKIP LOCKED, and the vectorizer FOR SHARE.
# Rows: queue_id, pk (text[]), attempts. As vecplug's owner.
CLAIM_BATCH = "SELECT queue_id, pk, attempts FROM vecplug.claim_batch(%s, %s)"
# End a batch of (vectorizer id): delete (the done queue ids), log (embedded, truncated, last error), and forget
# the failures of (the keys that went through, a JSON array of text arrays). As vecplug's owner.
FINISH_BATCH = "SELECT vecplug.finish_batch(%s, %s, %s, %s, %s, %s)"
# A row of (vectorizer id) failed on its own: an attempt and a backoff for (its queue ids) with (the error);
# past (max attempts) it moves to vecplug.failed; (retry delay), doubling to (max retry delay), in seconds.
# Returns how many table rows moved. As vecplug's owner.
RECORD_ROW_FAILURE = "SELECT vecplug.record_row_failure(%s, %s, %s, %s, %s, %s)"
# Say in vecplug.status why this worker leaves (vectorizer id) alone: (its message), or NULL for vecplug's own
# reason (worker_refusal). As vecplug's owner.
RECORD_REFUSAL = "SELECT vecplug.record_refusal(%s, %s)"
# Record (model name, fingerprint, spec as JSON) for (vectorizer id) created before its model was known;
# returns whether it was pinned now. As vecplug's owner.
PIN_MODEL = "SELECT vecplug.pin_model(%s, %s, %s, %s)"
# Fold activity rows older than a minute into sums (one worker at a time). As vecplug's owner.
FOLD_ACTIVITY = "SELECT vecplug.fold_activity()"

# Rows waiting in (vectorizer ids). As the worker (vecplug.status shows the tables this role may read).
PENDING = "SELECT coalesce(sum(pending), 0)::bigint FROM vecplug.status WHERE id = ANY(%s)"
# What a --once run leaves: every waiting row of (the refused ids), the retrying ones of the others among
# (the served ids). As the worker.
LEFT_AFTER_ERRORS = ("SELECT coalesce(sum(CASE WHEN id = ANY(%s) THEN pending ELSE retrying END), 0)::bigint "
                     "FROM vecplug.status WHERE id = ANY(%s)")
# The metrics' queue gauges: id, name, waiting rows, age of the oldest (seconds). As the worker.
QUEUE_GAUGES = "SELECT id, vectorizer, pending, extract(epoch FROM oldest_pending_age) FROM vecplug.status"

# -- vecplug's own: re-embedding (sql/core/22_reembed.sql) ---------------------------------------------------------

# Start moving (table, embedding column) to (model, fingerprint, dimensions): the shadow column. As vecplug's owner.
BEGIN_REEMBED = "SELECT vecplug.begin_reembed(%s::regclass, %s, %s, %s, %s)"
# Lock the vectorizer of (table, embedding column) for the swap, after the owner check. As vecplug's owner.
LOCK_VECTORIZER_FOR_SWAP = "SELECT vecplug._lock_vectorizer(%s::regclass, %s, 'finish a re-embedding')"
# Swap the shadow column of (table, embedding column) in, queueing the rows still without a new vector;
# returns how many. As the worker (SECURITY INVOKER: counting reads the table).
FINISH_REEMBED = "SELECT vecplug.finish_reembed(%s::regclass, %s, true)"
# Whether (table) has a valid index on (column). As the worker (the catalog).
HAS_VALID_INDEX = """
    SELECT EXISTS (SELECT FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
                   ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                   WHERE i.indrelid = %s::regclass AND a.attname = %s AND i.indisvalid)
"""


# -- the user's table: built per vectorizer, run as the worker -----------------------------------------------------
def read_texts(vectorizer: Vectorizer) -> sql.Composed:
    """The current text (and its md5) of rows by key; a key that names no row gives no line.

    Parameters: positions (int[]), then one text[] per key column. Rows: position, text, md5 (of what
    ``text_guard`` covers), the values of the format's columns (text[], ``format_columns`` order).
    A chunked vectorizer reads a NULL text as '' (no chunks: its old ones go).
    """
    from psycopg import sql

    keys, source = _unnest_keys(vectorizer)
    text = sql.SQL("t.{}::text").format(sql.Identifier(vectorizer.text_column))
    if vectorizer.chunked:
        text = sql.SQL("coalesce({}, '')").format(text)
    return sql.SQL("SELECT x.i, {text}, {guard}, {values} FROM {source} JOIN {table} t ON {match}").format(
        text=text, guard=text_guard(vectorizer, "t"), values=_format_values(vectorizer, "t"), source=source,
        table=_table(vectorizer), match=_key_match(vectorizer, "t", lambda i: sql.SQL("x.{}").format(keys[i])))


def text_guard(vectorizer: Vectorizer, alias: str) -> sql.Composed:
    """The md5 a write checks, so a text changed since it was read is not overwritten: of the text, or,
    with a format or chunking, of the text and the format's columns (a change of any queued the row again)."""
    from psycopg import sql

    text = sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(vectorizer.text_column))
    if not (vectorizer.format or vectorizer.chunked):
        return sql.SQL("md5({})").format(text)
    return sql.SQL("md5(ARRAY[{}]::text)").format(sql.SQL(", ").join(
        [text] + [sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(column))
                  for column in vectorizer.format_columns]))


def _format_values(vectorizer: Vectorizer, alias: str) -> sql.Composed:
    from psycopg import sql

    return sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(
        sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(column))
        for column in vectorizer.format_columns))


def keys_not_round_tripping(vectorizer: Vectorizer) -> sql.Composed:
    """Positions of keys that do not read back as themselves (cast to the key's type, then to text).

    Such a key matching no row proves nothing: it was not written as this
    worker reads it. Parameters as ``read_texts``. Reads no table.
    """
    from psycopg import sql

    keys, source = _unnest_keys(vectorizer)
    differs = sql.SQL(" OR ").join(
        sql.SQL("(x.{key}::{type})::text IS DISTINCT FROM x.{key}").format(key=key, type=sql.SQL(type_name))
        for key, type_name in zip(keys, vectorizer.key_types))
    return sql.SQL("SELECT x.i FROM {source} WHERE {differs}").format(source=source, differs=differs)


def write_vectors(vectorizer: Vectorizer, column: str) -> sql.Composed:
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
        WHERE {match} AND {guard} = x.h
        RETURNING {returned}
    """).format(table=_table(vectorizer), column=sql.Identifier(column), value=value, arrays=arrays,
                keys=sql.SQL(", ").join(keys), guard=text_guard(vectorizer, "t"),
                match=_key_match(vectorizer, "t", lambda i: sql.SQL("x.{}").format(keys[i])),
                returned=sql.SQL(", ").join(sql.SQL("x.{}").format(key) for key in keys))


def rows_without_shadow_vector(vectorizer: Vectorizer, after: bool) -> sql.Composed:
    """A page of rows with text and no vector in the re-embedding's shadow column, in key order.

    Parameters: with ``after``, the last key of the previous page (one value
    per key column, as text); then the page size. Rows: key (text[]), text, md5 (``text_guard``), the
    format's values (text[]).
    """
    from psycopg import sql

    keys = [sql.SQL("t.{}").format(sql.Identifier(column)) for column in vectorizer.key_columns]
    condition = sql.SQL("t.{text} IS NOT NULL AND t.{shadow} IS NULL").format(
        text=sql.Identifier(vectorizer.text_column), shadow=sql.Identifier(vectorizer.next_column))
    if after:
        condition = sql.SQL("{} AND ({}) > ({})").format(condition, sql.SQL(", ").join(keys), sql.SQL(", ").join(
            sql.SQL("(%s)::{}").format(sql.SQL(type_name)) for type_name in vectorizer.key_types))
    return sql.SQL("SELECT ARRAY[{texts}], t.{text}::text, {guard}, {values} FROM {table} t WHERE {condition} "
                   "ORDER BY {keys} LIMIT %s").format(
        texts=sql.SQL(", ").join(sql.SQL("{}::text").format(key) for key in keys),
        text=sql.Identifier(vectorizer.text_column), guard=text_guard(vectorizer, "t"),
        values=_format_values(vectorizer, "t"), table=_table(vectorizer),
        condition=condition, keys=sql.SQL(", ").join(keys))


def count_without_shadow_vector(vectorizer: Vectorizer) -> sql.Composed:
    """How many rows have text and no vector in the shadow column (the re-embedding's progress total)."""
    from psycopg import sql

    return sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT NULL AND {} IS NULL").format(
        _table(vectorizer), sql.Identifier(vectorizer.text_column), sql.Identifier(vectorizer.next_column))


def lock_against_writers(vectorizer: Vectorizer) -> sql.Composed:
    """Writers wait, readers go on: the last catch-up and the swap see every text."""
    from psycopg import sql

    return sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(_table(vectorizer))


def create_shadow_index(vectorizer: Vectorizer) -> sql.Composed:
    """The shadow column's HNSW cosine index, built without blocking writers (outside a transaction)."""
    from psycopg import sql

    return sql.SQL("CREATE INDEX CONCURRENTLY ON {} USING hnsw ({} {}.{})").format(
        _table(vectorizer), sql.Identifier(vectorizer.next_column), sql.Identifier(vectorizer.vector_schema),
        sql.Identifier(f"{vectorizer.storage}_cosine_ops"))


def key_parameters(vectorizer: Vectorizer, keys: list[tuple[str, ...]]) -> list[list]:
    """Parameters of ``read_texts`` / ``keys_not_round_tripping``: positions, then one list per key column."""
    return [list(range(len(keys))), *([key[index] for key in keys] for index in range(len(vectorizer.key_columns)))]


def _table(vectorizer: Vectorizer) -> sql.Identifier:
    from psycopg import sql

    return sql.Identifier(vectorizer.schema, vectorizer.table)


def _key_match(vectorizer: Vectorizer, table_alias: str, value_of) -> sql.Composable:
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


# -- the user's tables, chunked vectorizers: built per vectorizer, run as the worker --------------------------------
def rows_still_current(vectorizer: Vectorizer) -> sql.Composed:
    """Positions of rows whose text (and format columns) are still what was read: their md5 (``text_guard``).

    A row changed since was queued again by the change, a row deleted took its chunks with it (the
    foreign key): neither gets chunks now. Parameters: positions (int[]), one text[] per key column,
    the md5s (text[]). Rows: position.
    """
    from psycopg import sql

    keys = [sql.Identifier(f"k{index}") for index in range(len(vectorizer.key_columns))]
    return sql.SQL("SELECT x.i FROM unnest(%s::int[], {arrays}, %s::text[]) AS x (i, {keys}, h) "
                   "JOIN {table} t ON {match} WHERE {guard} = x.h").format(
        arrays=sql.SQL(", ").join([sql.SQL("%s::text[]")] * len(keys)), keys=sql.SQL(", ").join(keys),
        table=_table(vectorizer), match=_key_match(vectorizer, "t", lambda i: sql.SQL("x.{}").format(keys[i])),
        guard=text_guard(vectorizer, "t"))


def delete_chunks(vectorizer: Vectorizer) -> sql.Composed:
    """Delete every chunk of the rows by key (in the batch's transaction, before their new chunks go in).

    Parameters: one text[] per key column.
    """
    from psycopg import sql

    keys = [sql.Identifier(f"k{index}") for index in range(len(vectorizer.key_columns))]
    match = sql.SQL(" AND ").join(
        sql.SQL("d.{} = (x.{})::{}").format(sql.Identifier(column), key, sql.SQL(type_name))
        for column, key, type_name in zip(vectorizer.destination_keys, keys, vectorizer.key_types))
    return sql.SQL("DELETE FROM {destination} d USING unnest({arrays}) AS x ({keys}) WHERE {match}").format(
        destination=_destination(vectorizer), arrays=sql.SQL(", ").join([sql.SQL("%s::text[]")] * len(keys)),
        keys=sql.SQL(", ").join(keys), match=match)


def insert_chunks(vectorizer: Vectorizer) -> sql.Composed:
    """Insert chunks, one per element of the arrays.

    Parameters: one text[] per key column (binary), then chunk_index, chunk_start, chunk_end (int[]),
    the chunk texts (text[], binary) and the vectors (vector[], binary).
    """
    from psycopg import sql

    keys = [sql.Identifier(f"k{index}") for index in range(len(vectorizer.key_columns))]
    value = sql.SQL("x.e")
    if vectorizer.storage == "halfvec":
        value = sql.SQL("x.e::{}.halfvec").format(sql.Identifier(vectorizer.vector_schema))
    return sql.SQL("""
        INSERT INTO {destination} ({key_columns}, chunk_index, chunk_start, chunk_end, chunk, {column})
        SELECT {key_values}, x.ci, x.cs, x.ce, x.ct, {value}
        FROM unnest({key_arrays}, %s::int[], %s::int[], %s::int[], %b::text[], %b::{schema}.vector[])
             AS x ({keys}, ci, cs, ce, ct, e)
    """).format(
        destination=_destination(vectorizer),
        key_columns=sql.SQL(", ").join(sql.Identifier(column) for column in vectorizer.destination_keys),
        key_values=sql.SQL(", ").join(sql.SQL("(x.{})::{}").format(key, sql.SQL(type_name))
                                      for key, type_name in zip(keys, vectorizer.key_types)),
        column=sql.Identifier(vectorizer.embedding_column), value=value,
        key_arrays=sql.SQL(", ").join([sql.SQL("%b::text[]")] * len(keys)),
        schema=sql.Identifier(vectorizer.vector_schema), keys=sql.SQL(", ").join(keys))


def _destination(vectorizer: Vectorizer) -> sql.Identifier:
    from psycopg import sql

    return sql.Identifier(vectorizer.destination_schema, vectorizer.destination_table)
