"""Schema vecplug on a real PostgreSQL: install, twice, upgrade in place, uninstall, psql route, managed, privileges.

Nothing here needs an embedding server: the query functions are installed
and inspected in the catalog; calling them is tested in test_pg_query.py.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug_pgvector  # noqa: E402
from vecplug_pgvector import sqlfiles  # noqa: E402

CLOSED_PORT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there
LATEST = sqlfiles.latest_version()  # the schema version this checkout installs
NEXT = f"{LATEST + 1:04d}"  # a migration a later vecplug would add


def catalog_state(conn) -> list[tuple]:
    """Every object of schema vecplug with its row version (xmin): equal states mean nothing was rewritten."""
    return conn.execute("""
        SELECT 'schema', n.nspname, n.xmin::text, n.nspacl::text FROM pg_namespace n WHERE n.nspname = 'vecplug'
        UNION ALL
        SELECT 'function', p.oid::regprocedure::text, p.xmin::text, md5(p.prosrc) || coalesce(p.proacl::text, '')
        FROM pg_proc p WHERE p.pronamespace = 'vecplug'::regnamespace
        UNION ALL
        SELECT 'relation', c.relname, c.xmin::text, coalesce(c.relacl::text, '')
        FROM pg_class c WHERE c.relnamespace = 'vecplug'::regnamespace
        UNION ALL
        SELECT 'setting', s.name, s.xmin::text, coalesce(s.value, '') FROM vecplug.settings s
        UNION ALL
        SELECT 'migration', m.name, m.xmin::text, coalesce(m.checksum, '') FROM vecplug.migrations m
        ORDER BY 1, 2
    """).fetchall()


def catalog_definition(conn) -> list[tuple]:
    """What schema vecplug defines, without row versions or times: compares two installs."""
    return conn.execute("""
        SELECT 'function', p.oid::regprocedure::text, pg_get_function_result(p.oid), p.provolatile::text,
               p.proparallel::text, p.prosecdef::text, array_to_string(p.proconfig, ','), md5(p.prosrc),
               coalesce(p.proacl::text, '')
        FROM pg_proc p WHERE p.pronamespace = 'vecplug'::regnamespace
        UNION ALL
        SELECT 'column', c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod), '', '', '', '', '',
               coalesce(c.relacl::text, '')
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
        WHERE c.relnamespace = 'vecplug'::regnamespace AND c.relkind = 'r'
        UNION ALL
        SELECT 'setting', name, coalesce(value, ''), '', '', '', '', '', '' FROM vecplug.settings
        ORDER BY 1, 2
    """).fetchall()


def test_sql_files_ship_inside_the_package():
    root = sqlfiles.sql_dir()
    package = Path(vecplug_pgvector.__file__).parent
    assert root.parent.resolve() == package.resolve() or root.resolve().parent.name != "adapters"
    for name in ("install.sql", "uninstall.sql", "core/bootstrap.sql"):
        assert (root / name).is_file(), name
    assert [file.name for file in sqlfiles.migrations()][0] == "0001_core"
    assert sqlfiles.repeatables("query")[0].name == "query/10_embed.sql"
    cli = Path(sys.executable).with_name("vecplug")
    printed = subprocess.run([str(cli), "pg", "sql-dir"], capture_output=True, text=True, check=True).stdout.strip()
    assert Path(printed).resolve() == root.resolve()


def test_install_sql_names_every_file_in_order():
    """The psql route (install.sql) and the Python installer apply the same files in the same order."""
    root = sqlfiles.sql_dir()
    included = re.findall(r"^\\ir (\S+)$", (root / "install.sql").read_text(), flags=re.M)
    expected = ["core/bootstrap.sql"]
    expected += [f"core/migrations/{file.name}.sql" for file in sqlfiles.migrations()]
    expected += [file.name for file in sqlfiles.repeatables("core") + sqlfiles.repeatables("query")]
    assert included == expected


def test_install_creates_both_layers(pg_cluster, fresh_db):
    with pg_cluster.connect(fresh_db) as conn:
        report = vecplug_pgvector.install(conn, CLOSED_PORT_URL, connect_timeout=2, read_timeout=7)
        assert report.previous_version == 0 and report.version == LATEST
        assert report.query_functions == "installed"
        assert "CREATE EXTENSION vector" in report.applied and "query/10_embed.sql" in report.applied
        assert set(report.settings_changed) >= {"server_url", "connect_timeout", "read_timeout"}
        assert any("could not ask the embedding server for its model" in note and "http://127.0.0.1:9" in note
                   for note in report.notes)
        assert conn.execute("SELECT vecplug.schema_version()").fetchone()[0] == LATEST
        settings = dict(conn.execute("SELECT name, value FROM vecplug.settings").fetchall())
        assert settings["server_url"] == CLOSED_PORT_URL
        assert (settings["connect_timeout"], settings["read_timeout"]) == ("2", "7")
        functions = {row[0]: row[1:] for row in conn.execute("""
            SELECT proname, provolatile, proparallel, prosecdef, proconfig, proacl::text
            FROM pg_proc WHERE pronamespace = 'vecplug'::regnamespace""")}
        for name in ("embed_query", "embed_document", "embed_documents"):
            volatility, parallel, security_definer, config, acl = functions[name]
            assert (volatility, parallel, security_definer) == ("s", "s", True), name
            assert config == ["search_path=pg_catalog, pg_temp"], name
        for internal in ("_embed_remote", "_server_settings"):
            acl = functions[internal][4]
            assert acl and not re.search(r"(^|[{,])=X/", acl), f"{internal} is executable by PUBLIC: {acl}"
        result_type = conn.execute(
            "SELECT pg_get_function_result('vecplug.embed_query(text, text, integer)'::regprocedure)").fetchone()[0]
        assert result_type in ("vector", "public.vector")
        assert conn.execute("SELECT vecplug.embed_query(NULL)").fetchone()[0] is None
        assert conn.execute("SELECT vecplug.embed_documents(NULL)").fetchone()[0] is None
        assert conn.execute("SELECT vecplug.embed_documents(ARRAY[NULL, NULL]::text[])::text").fetchone()[0] \
            == "{NULL,NULL}"


def test_install_twice_changes_nothing(pg_cluster, fresh_db):
    with pg_cluster.connect(fresh_db) as conn:
        vecplug_pgvector.install(conn, CLOSED_PORT_URL, api_key="k1", read_timeout=9)
        before = catalog_state(conn)
        again = vecplug_pgvector.install(conn, CLOSED_PORT_URL, api_key="k1", read_timeout=9)
        assert not again.changed and again.applied == [] and again.settings_changed == []
        assert again.query_functions == "up to date"
        assert "already up to date" in str(again)
        assert catalog_state(conn) == before
        bare = vecplug_pgvector.install(conn)  # no settings given: the stored ones stay
        assert not bare.changed
        assert catalog_state(conn) == before


def _sql_copy(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(sqlfiles.sql_dir(), root)
    return root


def test_a_later_version_upgrades_in_place(pg_cluster, fresh_db, tmp_path):
    version_1 = _sql_copy(tmp_path, "v1")
    version_2 = _sql_copy(tmp_path, "v2")
    (version_2 / "core" / "migrations" / f"{NEXT}_notes.sql").write_text("""
        CREATE TABLE vecplug.notes (id bigint PRIMARY KEY, body text NOT NULL);
        INSERT INTO vecplug.settings (name, value, description) VALUES ('notes_enabled', 'yes', 'a v2 setting');
    """)
    (version_2 / "core" / "20_notes.sql").write_text("""
        CREATE OR REPLACE FUNCTION vecplug.note_count() RETURNS bigint LANGUAGE sql STABLE
        AS $$ SELECT count(*) FROM vecplug.notes $$;
    """)
    functions_file = version_2 / "core" / "10_functions.sql"
    functions_file.write_text(functions_file.read_text() + "\n-- v2 touches a repeatable file\n")
    with pg_cluster.connect(fresh_db) as conn:
        vecplug_pgvector.install(conn, _sql_root=version_1)
        conn.execute("UPDATE vecplug.settings SET value = '7' WHERE name = 'read_timeout'")  # the user's own choice
        upgraded = vecplug_pgvector.install(conn, _sql_root=version_2)
        assert (upgraded.previous_version, upgraded.version) == (LATEST, LATEST + 1)
        assert upgraded.applied == [f"{NEXT}_notes.sql", "core/10_functions.sql", "core/20_notes.sql"]
        assert f"upgraded vecplug schema from version {LATEST} to {LATEST + 1}" in str(upgraded)
        assert conn.execute("SELECT vecplug.schema_version(), vecplug.note_count()").fetchone() == (LATEST + 1, 0)
        settings = dict(conn.execute("SELECT name, value FROM vecplug.settings").fetchall())
        assert settings["read_timeout"] == "7" and settings["notes_enabled"] == "yes"
        before = catalog_state(conn)
        assert not vecplug_pgvector.install(conn, _sql_root=version_2).changed
        with pytest.raises(vecplug_pgvector.InstallError, match=rf"schema version {LATEST + 1} .*newer than this vecplug's {LATEST}"):
            vecplug_pgvector.install(conn, _sql_root=version_1)
        assert catalog_state(conn) == before


def test_a_migration_that_changed_after_it_ran_is_refused(pg_cluster, fresh_db, tmp_path):
    """The database would never get the change: install says so instead of calling it up to date."""
    changed = _sql_copy(tmp_path, "changed")
    migration = changed / "core" / "migrations" / "0002_vectorizers.sql"
    migration.write_text(migration.read_text() + "\nALTER TABLE vecplug.vectorizers ADD COLUMN note text;\n")
    with pg_cluster.connect(fresh_db) as conn:
        vecplug_pgvector.install(conn)
        before = catalog_state(conn)
        with pytest.raises(vecplug_pgvector.InstallError,
                           match=r"ran migrations that have changed since: 0002_vectorizers\.sql .*new migration"):
            vecplug_pgvector.install(conn, _sql_root=changed)
        assert catalog_state(conn) == before


def test_an_install_from_before_the_vectorizer_files_split_upgrades_in_place(pg_cluster, fresh_db, tmp_path):
    """Up to issue 20, core/20_vectorizers.sql held the vectorizers' internals and API in one file.

    The upgrade applies the new internals file and the API file (same name,
    new checksum), keeps the vectorizers, and ends where a new install does.
    """
    one_file = _sql_copy(tmp_path, "one_file")
    internals, api = one_file / "core" / "15_vectorizer_internals.sql", one_file / "core" / "20_vectorizers.sql"
    api.write_text(internals.read_text() + "\n" + api.read_text())
    internals.unlink()
    new_install = pg_cluster.create_database(fresh_db + "_new")
    try:
        with pg_cluster.connect(fresh_db) as conn, pg_cluster.connect(new_install) as fresh:
            vecplug_pgvector.install(conn, _sql_root=one_file)
            conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
            conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', dimensions => 8)")
            conn.execute("INSERT INTO docs (id, body) VALUES (1, 'one'), (2, 'two')")
            upgraded = vecplug_pgvector.install(conn)
            assert upgraded.applied == ["core/15_vectorizer_internals.sql", "core/20_vectorizers.sql"]
            assert (upgraded.previous_version, upgraded.version) == (LATEST, LATEST)
            vecplug_pgvector.install(fresh)
            assert catalog_definition(conn) == catalog_definition(fresh)
            recorded = [row[0] for row in conn.execute(
                "SELECT name FROM vecplug.migrations WHERE kind = 'repeatable' ORDER BY name")]
            assert recorded == [file.name for layer in ("core", "query") for file in sqlfiles.repeatables(layer)]
            assert conn.execute("SELECT pending, state FROM vecplug.status").fetchall() == [(2, "ok")]
            conn.execute("INSERT INTO docs (id, body) VALUES (3, 'three')")  # the triggers still queue
            assert conn.execute("SELECT vecplug.drop_vectorizer('docs')").fetchone()[0] == 3
            assert not vecplug_pgvector.install(conn).changed
    finally:
        pg_cluster.execute(f'DROP DATABASE IF EXISTS "{new_install}" WITH (FORCE)')


def test_uninstall_removes_everything_and_keeps_the_extensions(pg_cluster, fresh_db):
    with pg_cluster.connect(fresh_db) as conn:
        vecplug_pgvector.install(conn, CLOSED_PORT_URL)
        assert vecplug_pgvector.uninstall(conn) == []
        assert conn.execute("SELECT to_regnamespace('vecplug')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'embed_%'").fetchone()[0] == 0
        extensions = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
        assert {"vector", "plpython3u"} <= extensions
        assert vecplug_pgvector.uninstall(conn) == []  # nothing there: nothing to do
        again = vecplug_pgvector.install(conn)
        assert again.previous_version == 0 and again.query_functions == "installed"


def test_uninstall_refuses_while_objects_outside_depend_on_it(pg_cluster, fresh_db):
    with pg_cluster.connect(fresh_db) as conn:
        vecplug_pgvector.install(conn)
        conn.execute("CREATE TABLE docs (id int, body text, embedding vector(3) DEFAULT vecplug.embed_document('x'))")
        conn.execute("CREATE VIEW installed AS SELECT vecplug.schema_version() AS version")
        with pytest.raises(vecplug_pgvector.InstallError, match=r"view public.installed.*Nothing was changed"):
            vecplug_pgvector.uninstall(conn)
        assert conn.execute("SELECT vecplug.schema_version()").fetchone()[0] == LATEST
        dropped = vecplug_pgvector.uninstall(conn, cascade=True)
        assert dropped == ["default value for column embedding of table public.docs", "view public.installed"]
        assert conn.execute("SELECT to_regclass('docs') IS NOT NULL, to_regclass('installed')").fetchone() == (True,
                                                                                                               None)


def run_psql(pg_cluster, dbname: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(pg_cluster.bin_dir / "psql"), "-X", "-q", pg_cluster.dsn(dbname), *arguments],
                          capture_output=True, text=True, timeout=120)


def test_psql_route_installs_what_the_installer_installs(pg_cluster, fresh_db):
    by_installer = pg_cluster.create_database(fresh_db + "_py")
    try:
        root = sqlfiles.sql_dir()
        psql = run_psql(pg_cluster, fresh_db, "-v", f"server_url={CLOSED_PORT_URL}/", "-v", "api_key=secret",
                        "-f", str(root / "install.sql"))
        assert psql.returncode == 0, psql.stderr
        again = run_psql(pg_cluster, fresh_db, "-f", str(root / "install.sql"))
        assert again.returncode == 0, again.stderr
        with pg_cluster.connect(fresh_db) as by_psql, pg_cluster.connect(by_installer) as by_python:
            vecplug_pgvector.install(by_python, CLOSED_PORT_URL, api_key="secret")
            assert catalog_definition(by_psql) == catalog_definition(by_python)
            # The installer takes over a psql install: repeatable files once (psql records no checksum), then nothing.
            taken_over = vecplug_pgvector.install(by_psql)
            assert taken_over.applied == [file.name for layer in ("core", "query") for file in sqlfiles.repeatables(layer)]
            assert not vecplug_pgvector.install(by_psql).changed
        uninstalled = run_psql(pg_cluster, fresh_db, "-1", "-f", str(root / "uninstall.sql"))
        assert uninstalled.returncode == 0, uninstalled.stderr
        with pg_cluster.connect(fresh_db) as conn:
            assert conn.execute("SELECT to_regnamespace('vecplug')").fetchone()[0] is None
    finally:
        pg_cluster.execute(f'DROP DATABASE IF EXISTS "{by_installer}" WITH (FORCE)')


def test_managed_postgres_installs_the_core_with_a_plain_notice(pg_cluster, managed_db):
    """No superuser, so no plpython3u: the core installs and the report says what to do instead."""
    with pg_cluster.connect(managed_db, user="app") as conn:
        report = vecplug_pgvector.install(conn, CLOSED_PORT_URL)
        assert report.version == LATEST and report.query_functions == "not installed"
        text = str(report)
        assert "role 'app' is not a superuser" in text and "vecplug_pgvector.search(conn, table, text)" in text
        assert conn.execute("SELECT vecplug.schema_version()").fetchone()[0] == LATEST
        assert conn.execute("SELECT to_regprocedure('vecplug.embed_query(text, text, integer)')").fetchone()[0] is None
        assert conn.execute("SELECT value FROM vecplug.settings WHERE name = 'server_url'").fetchone()[0] \
            == CLOSED_PORT_URL
        assert not vecplug_pgvector.install(conn, CLOSED_PORT_URL).changed
        assert vecplug_pgvector.uninstall(conn) == []


def test_without_pgvector_the_core_still_installs_and_the_report_says_why(pg_cluster, fresh_db):
    pg_cluster.execute(f'ALTER DATABASE "{fresh_db}" OWNER TO app')
    with pg_cluster.connect(fresh_db, user="app") as conn:
        report = vecplug_pgvector.install(conn)
        assert report.query_functions == "not installed"
        assert any("pgvector is available but not enabled" in note and "CREATE EXTENSION vector" in note
                   for note in report.notes)
        assert conn.execute("SELECT vecplug.schema_version()").fetchone()[0] == LATEST


def test_another_role_cannot_change_an_installed_schema(pg_cluster, fresh_db):
    with pg_cluster.connect(fresh_db) as conn:
        vecplug_pgvector.install(conn)
        conn.execute("GRANT CREATE ON DATABASE {} TO app".format(psycopg.sql.Identifier(fresh_db).as_string(conn)))
    with pg_cluster.connect(fresh_db, user="app") as conn:
        with pytest.raises(vecplug_pgvector.InstallError, match="belongs to role 'postgres'"):
            vecplug_pgvector.install(conn, CLOSED_PORT_URL)


def test_an_ordinary_role_can_neither_read_nor_change_the_settings(pg_cluster, fresh_db):
    with pg_cluster.connect(fresh_db) as conn:
        vecplug_pgvector.install(conn, CLOSED_PORT_URL, api_key="the-secret-key")
    forbidden = [
        "SELECT value FROM vecplug.settings WHERE name = 'api_key'",
        "UPDATE vecplug.settings SET value = 'http://elsewhere:1' WHERE name = 'server_url'",
        "INSERT INTO vecplug.settings (name, value) VALUES ('server_url2', 'x')",
        "DELETE FROM vecplug.settings",
        "SELECT vecplug._server_settings()",
        "SELECT vecplug._embed_remote(ARRAY['x'], 'query', NULL, NULL, '{\"server_url\": \"http://elsewhere:1\"}')",
        "CREATE FUNCTION vecplug.embed_query(query text) RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "DELETE FROM vecplug.migrations",
    ]
    with pg_cluster.connect(fresh_db, user="reader") as conn:
        for statement in forbidden:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT vecplug.schema_version()").fetchone()[0] == LATEST
    with pg_cluster.connect(fresh_db) as conn:
        assert conn.execute("SELECT value FROM vecplug.settings WHERE name = 'server_url'").fetchone()[0] \
            == CLOSED_PORT_URL


@pytest.mark.parametrize("arguments, message", [
    ({"server_url": "ftp://example.org"}, "http:// or https:// URL"),
    ({"server_url": "localhost:8000"}, "http:// or https:// URL"),
    ({"read_timeout": 0}, "read_timeout must be between 0 and 3600"),
    ({"connect_timeout": 4000}, "connect_timeout must be between 0 and 3600"),
    ({"api_key": "key\n"}, "white space"),
])
def test_bad_settings_are_refused_before_anything_changes(pg_cluster, fresh_db, arguments, message):
    with pg_cluster.connect(fresh_db) as conn:
        with pytest.raises(ValueError, match=message):
            vecplug_pgvector.install(conn, **arguments)
        assert conn.execute("SELECT to_regnamespace('vecplug')").fetchone()[0] is None


def test_cli_install_and_uninstall(pg_cluster, fresh_db, tmp_path):
    cli = str(Path(sys.executable).with_name("vecplug"))
    dsn = pg_cluster.dsn(fresh_db)
    key_file = tmp_path / "key"
    key_file.write_text("cli-key\n")
    installed = subprocess.run([cli, "pg", "install", "--dsn", dsn, "--server-url", CLOSED_PORT_URL,
                                "--api-key-file", str(key_file), "--read-timeout", "12"],
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    assert f"installed vecplug schema version {LATEST} in database '{fresh_db}'" in installed.stdout
    assert "query functions (vecplug.embed_query, embed_document, embed_documents): installed" in installed.stdout
    assert "could not ask the embedding server for its model" in installed.stdout
    with pg_cluster.connect(fresh_db) as conn:
        settings = dict(conn.execute("SELECT name, value FROM vecplug.settings").fetchall())
    assert (settings["api_key"], settings["read_timeout"]) == ("cli-key", "12")
    refused = subprocess.run([cli, "pg", "install", "--dsn", dsn, "--read-timeout", "0"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "read_timeout must be between 0 and 3600" in refused.stderr
    removed = subprocess.run([cli, "pg", "uninstall", "--dsn", dsn], capture_output=True, text=True, timeout=120)
    assert removed.returncode == 0 and "schema vecplug removed" in removed.stdout, removed.stderr
