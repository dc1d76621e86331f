"""``vecplug_pgvector.connection``: every connection vecplug opens is named for its purpose and cannot hang.

Also checks that it stays the only place that opens one (issue 20).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug_pgvector  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402
from vecplug_pgvector.connection import CONNECT_TIMEOUT_S, connect, connection_for  # noqa: E402


def without_timeout(dsn: str) -> str:
    parameters = conninfo_to_dict(dsn)
    parameters.pop("connect_timeout", None)
    return make_conninfo(**parameters)


def test_a_connection_is_named_for_its_purpose_with_a_timeout(pg_cluster, monkeypatch):
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    dsn = without_timeout(pg_cluster.dsn())
    with connect(dsn, "pg test") as conn:
        assert conn.autocommit
        assert conn.execute("SELECT current_setting('application_name')").fetchone()[0] == "vecplug pg test"
        assert conn.info.get_parameters().get("connect_timeout") == str(CONNECT_TIMEOUT_S)
    with connect(make_conninfo(dsn, connect_timeout=3), "pg test") as conn:  # the DSN's own wins
        assert conn.info.get_parameters()["connect_timeout"] == "3"


def test_connection_for_opens_and_closes_only_its_own(pg_cluster):
    with pg_cluster.connect() as given:
        with connection_for(given, "pg test") as conn:
            assert conn is given
        assert not given.closed
    with connection_for(pg_cluster.dsn(), "pg test") as conn:
        assert conn.execute("SELECT current_setting('application_name')").fetchone()[0] == "vecplug pg test"
    assert conn.closed


def test_only_the_connection_module_opens_connections():
    package = Path(vecplug_pgvector.__file__).parent
    openers = sorted(path.name for path in package.glob("*.py")
                     if re.search(r"psycopg\.connect\(", path.read_text(encoding="utf-8")))
    assert openers == ["connection.py"]
