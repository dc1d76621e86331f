"""``vecplug cluster --write FIELD`` on PostgreSQL: an integer column, added if missing, filled all or nothing.

Everything runs as the calling role: ``ALTER TABLE ... ADD COLUMN IF NOT
EXISTS`` needs the table's owner (a role that may not gets one line saying
so, and nothing changes); a column that exists already needs only UPDATE
on it. All batches are one transaction, so an unknown id or an error
half-way leaves the table as it was. The labels are read in full first
(ids and ints), so the transaction is as short as the UPDATEs. The
vectorizer's AFTER UPDATE trigger fires, but queues only rows whose text
changed: labels re-queue nothing.
"""
from __future__ import annotations

from vecplug.errors import InvalidSettingError
from vecplug.stores import UnknownIdsError

from .store_tables import INTEGER_TYPES
from .vectorizers import use_key_settings

WRITE_BATCH = 5000
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: a longer name would be cut silently


def write_labels(store, field: str, labels) -> int:
    """Set ``field`` of each (id, label) of ``labels`` in ``store``'s table; returns how many rows."""
    import psycopg
    from psycopg import sql

    from .stores import StorePermissionError, _permission_errors

    _check_field(store, field)
    # Read every label before the transaction: they often come from a pass over store.items() on this same
    # connection, whose cursor would otherwise live inside the write's transaction (a failure then unwinds
    # both out of order). Ids and ints only: small beside the vectors the clustering held.
    batches = list(_batches(store, labels))
    columns, conn = store.columns, store.conn
    written = 0
    with _permission_errors(), conn.transaction():
        if not columns.integer_id:
            use_key_settings(conn)
        if not _integer_column_exists(conn, store, field):
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} integer").format(
                        columns.table, sql.Identifier(field)))
            except psycopg.errors.InsufficientPrivilege:
                raise StorePermissionError(
                    f"role {conn.info.user!r} may not add column {field!r} to table {columns.display} (only its "
                    f"owner may): ask the owner to run ALTER TABLE {columns.display} ADD COLUMN {field} integer and "
                    f"GRANT UPDATE ({field}) to this role, or connect as the owner") from None
        update = sql.SQL("UPDATE {table} AS t SET {field} = l.label FROM unnest({ids}, CAST(%(labels)s AS integer[])) "
                         "AS l (key, label) WHERE t.{key} = l.key").format(
            table=columns.table, field=sql.Identifier(field), ids=store._ids_parameter("ids"),
            key=sql.Identifier(columns.id))
        for batch in batches:
            ids = list(batch)
            arguments = {"ids": store._ids_argument(ids), "labels": list(batch.values())}
            with conn.cursor() as cursor:
                cursor.execute(update, arguments)
                if cursor.rowcount != len(ids):
                    _raise_unknown(store, ids)
            written += len(ids)
    return written


def _check_field(store, field) -> None:
    if not isinstance(field, str) or not field.strip():
        raise InvalidSettingError(f"--write needs a column name, not {field!r}")
    if len(field.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidSettingError(f"--write {field!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte names")
    taken = {store.columns.vector: "vector", store.columns.id: "id", store.columns.text: "text"}
    if field in taken:
        raise InvalidSettingError(f"--write {field!r} is the store's {taken[field]} column: name another column "
                                  "for the labels")


def _integer_column_exists(conn, store, field: str) -> bool:
    """True when ``field`` is an integer column already; an existing column of another type is refused."""
    row = conn.execute("""
        SELECT tn.nspname, t.typname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
        JOIN pg_namespace tn ON tn.oid = t.typnamespace
        WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
    """, [store.columns.schema, store.columns.name, field]).fetchone()
    if row is None:
        return False
    if row[0] != "pg_catalog" or row[1] not in INTEGER_TYPES:
        raise InvalidSettingError(f"column {field!r} of table {store.columns.display} exists with type {row[1]}, "
                                  "not an integer: name another column for --write")
    return True


def _batches(store, labels):
    """{id: label} of at most WRITE_BATCH ids (a repeated id: its last label)."""
    batch: dict = {}
    for row_id, label in labels:
        if isinstance(label, bool) or int(label) != label:
            raise InvalidSettingError(f"label {label!r} of id {row_id!r} is not an integer")
        batch[store._normal_id(row_id)] = int(label)
        if len(batch) >= WRITE_BATCH:
            yield batch
            batch = {}
    if batch:
        yield batch


def _raise_unknown(store, ids: list) -> None:
    from psycopg import sql

    query = sql.SQL("SELECT k FROM unnest({ids}) AS k WHERE NOT EXISTS (SELECT FROM {table} AS t "
                    "WHERE t.{key} = k)").format(ids=store._ids_parameter("ids"), table=store.columns.table,
                                                 key=sql.Identifier(store.columns.id))
    missing = [row[0] for row in store.conn.execute(query, {"ids": store._ids_argument(ids)}).fetchall()]
    raise UnknownIdsError(f"{store.description} has no row with id(s) "
                          f"{', '.join(repr(store._normal_id(value)) for value in missing[:20])}"
                          f"{' and more' if len(missing) > 20 else ''}: no label was written")
