"""The one place vecplug opens a PostgreSQL connection: the same timeout and a name that says what it is for.

    conn = connect(dsn, "pg worker")          # application_name "vecplug pg worker", connect_timeout 10 s
    with connection_for(conn_or_dsn, "pg status") as conn:   # the caller's connection, or one of our own
        ...

Every connection is autocommit unless told otherwise: callers open their
transactions explicitly (``with conn.transaction()``), so nothing is left
idle in a transaction between them. ``application_name`` shows in
``pg_stat_activity`` and the server's log (``%a``), so a DBA can tell a
worker from a search. A DSN (or ``$PGCONNECT_TIMEOUT``) that sets its own
``connect_timeout`` keeps it; without one, libpq would wait for an
unreachable host as long as the operating system lets it (minutes).
"""
from __future__ import annotations

import contextlib
import os

CONNECT_TIMEOUT_S = 10
APPLICATION_PREFIX = "vecplug"


def connect(dsn: str, purpose: str, *, autocommit: bool = True, **options):
    """A new connection to ``dsn`` (psycopg 3), named ``vecplug <purpose>`` (e.g. ``vecplug pg worker``).

    ``options`` go to psycopg as they are (``row_factory``, libpq parameters such as ``sslmode``).
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    options.setdefault("application_name", f"{APPLICATION_PREFIX} {purpose}")
    if "connect_timeout" not in conninfo_to_dict(dsn) and not os.environ.get("PGCONNECT_TIMEOUT"):
        options.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    return psycopg.connect(dsn, autocommit=autocommit, **options)


@contextlib.contextmanager
def connection_for(conn, purpose: str):
    """For functions that take "a connection or a DSN": the caller's connection, left open, or one
    opened from the DSN string (``connect(conn, purpose)``) and closed at the end."""
    if isinstance(conn, str):
        with connect(conn, purpose) as owned:
            yield owned
    else:
        yield conn
