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

What goes wrong before a connection exists is said in vecplug's words, as
exceptions that are both psycopg's and vecplug's (code that catches either
keeps working): a malformed DSN is an ``InvalidDsnError``
(``vecplug.InvalidSettingError`` and ``psycopg.ProgrammingError``: the CLI
exits 2), a database that does not answer or refuses the login a
``DatabaseUnavailableError`` (``vecplug.VecplugError`` and
``psycopg.OperationalError``: exit 1). Each message is one line that names
the fix.
"""
from __future__ import annotations

import contextlib
import functools
import os

CONNECT_TIMEOUT_S = 10
APPLICATION_PREFIX = "vecplug"


def connect(dsn: str, purpose: str, *, autocommit: bool = True, **options):
    """A new connection to ``dsn`` (psycopg 3), named ``vecplug <purpose>`` (e.g. ``vecplug pg worker``).

    ``options`` go to psycopg as they are (``row_factory``, libpq parameters such as ``sslmode``).
    """
    import psycopg

    parameters = check_dsn(dsn)
    options.setdefault("application_name", f"{APPLICATION_PREFIX} {purpose}")
    if "connect_timeout" not in parameters and not os.environ.get("PGCONNECT_TIMEOUT"):
        options.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **options)
    except psycopg.OperationalError as error:
        unavailable, _ = error_classes()
        raise unavailable(f"cannot connect to PostgreSQL: {_reason(error)}. Check the DSN "
                          "(--dsn, else the PG* environment variables: host, port, user, password, dbname) and "
                          "that the server is running") from error


def check_dsn(dsn: str) -> dict:
    """The DSN's parameters; a DSN libpq cannot parse is an ``InvalidDsnError`` that shows the two forms."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        _, invalid = error_classes()
        raise invalid(f"{dsn!r} is not a PostgreSQL connection string ({_reason(error)}): use a URI like "
                      "postgresql://user@localhost:5432/dbname or key=value pairs like "
                      "'host=localhost port=5432 dbname=app user=me'") from None


@functools.cache
def error_classes() -> tuple[type, type]:
    """(DatabaseUnavailableError, InvalidDsnError): made on first use, so importing this module imports no psycopg."""
    import psycopg

    from vecplug.errors import InvalidSettingError, VecplugError

    class DatabaseUnavailableError(VecplugError, psycopg.OperationalError):
        """PostgreSQL did not answer, or refused the connection (login, database name, timeout)."""

    class InvalidDsnError(InvalidSettingError, psycopg.ProgrammingError):
        """A connection string libpq cannot parse."""

    for made in (DatabaseUnavailableError, InvalidDsnError):
        made.__module__ = __name__
    return DatabaseUnavailableError, InvalidDsnError


def _reason(error) -> str:
    """libpq's message on one line, without its "connection failed:" prefix and its generic hint."""
    text = " ".join(str(error).split())
    text = text.removeprefix("connection failed: ").removeprefix("connection is bad: ")
    return text.replace(" Is the server running on that host and accepting TCP/IP connections?", "")


@contextlib.contextmanager
def connection_for(conn, purpose: str):
    """For functions that take "a connection or a DSN": the caller's connection, left open, or one
    opened from the DSN string (``connect(conn, purpose)``) and closed at the end."""
    if isinstance(conn, str):
        with connect(conn, purpose) as owned:
            yield owned
    else:
        yield conn
