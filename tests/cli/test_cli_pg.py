"""``vecplug pg`` on a real cluster, as a person meets it: which server install recorded, and database errors
as one line that names the fix (issue 23, items 7 and 11)."""
from __future__ import annotations

import subprocess
import sys


def run_vecplug(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_install_without_server_url_says_which_url_it_keeps(pg_cluster, fresh_db):
    dsn = pg_cluster.dsn(fresh_db)
    first = run_vecplug("pg", "install", "--dsn", dsn)
    assert first.returncode == 0, first.stderr
    assert "server URL: none recorded" in first.stdout
    assert "vecplug pg install --server-url http://127.0.0.1:8080" in first.stdout
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("UPDATE vecplug.settings SET value = 'http://127.0.0.1:9' WHERE name = 'server_url'")
    again = run_vecplug("pg", "install", "--dsn", dsn)
    assert again.returncode == 0, again.stderr
    assert "server URL: http://127.0.0.1:9 (recorded before; change it with vecplug pg install --server-url URL)" \
        in again.stdout


def test_a_database_without_vecplug_is_one_line_with_the_fix(pg_cluster, fresh_db):
    process = run_vecplug("pg", "status", "--dsn", pg_cluster.dsn(fresh_db))
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr
    assert process.stderr.count("\n") == 1 and process.stderr.startswith("Error: ")
    assert "schema vecplug is not installed in this database" in process.stderr
    assert "vecplug pg install --dsn" in process.stderr


def test_a_wrong_password_is_one_line(pg_cluster, fresh_db):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parameters = conninfo_to_dict(pg_cluster.dsn(fresh_db))
    wrong = make_conninfo(**{**parameters, "user": "no_such_role_for_vecplug"})
    process = run_vecplug("pg", "status", "--dsn", wrong)
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr
    assert process.stderr.startswith("Error: cannot connect to PostgreSQL") and process.stderr.count("\n") == 1
    assert "no_such_role_for_vecplug" in process.stderr
