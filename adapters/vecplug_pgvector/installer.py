"""Install, upgrade and uninstall schema ``vecplug``: what ``vecplug pg install|uninstall`` run.

One transaction, under an advisory lock, so two installs at once wait for
each other and a failure leaves the database as it was. Layers:

- core (plain SQL): always, also on managed PostgreSQL without a superuser;
- query functions (plpython3u): only when pgvector is enabled, plpython3u is
  available and the role is a superuser; otherwise the report says why and
  what the user does instead (``vecplug_pgvector.search`` in the application).

Migrations apply once (and one that changed after it ran is refused);
repeatable files apply when their checksum changed, so installing twice
changes nothing. The report says what was done.
"""
from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import Path

from vecplug.errors import ServerError, VecplugError
from vecplug.model import ModelSpec

from . import sqlfiles
from .connection import connection_for

MAX_TIMEOUT_S = 3600
LOCK = "SELECT pg_advisory_xact_lock(hashtext('vecplug install'))"


class InstallError(VecplugError, RuntimeError):
    """The database is not in a state this vecplug can install into; nothing was changed."""


@dataclasses.dataclass
class InstallReport:
    """What ``install`` did and could not do; ``str()`` is what the CLI prints."""

    database: str
    role: str
    previous_version: int
    version: int
    applied: list[str] = dataclasses.field(default_factory=list)
    query_functions: str = "not installed"  # "installed", "up to date" or "not installed"
    settings_changed: list[str] = dataclasses.field(default_factory=list)
    server: ModelSpec | None = None  # the model the server serves, when it was asked
    server_url: str | None = None  # the server the SQL functions call after this install (None: none recorded)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.settings_changed)

    def __str__(self) -> str:
        if self.previous_version == 0:
            head = f"installed vecplug schema version {self.version}"
        elif self.previous_version < self.version:
            head = f"upgraded vecplug schema from version {self.previous_version} to {self.version}"
        else:
            head = f"vecplug schema version {self.version} " + ("updated" if self.changed else "already up to date")
        lines = [f"{head} in database {self.database!r} (as role {self.role!r})"]
        if self.applied:
            lines.append("  applied: " + ", ".join(self.applied))
        lines.append("  core (settings, version, plain SQL): installed")
        lines.append(f"  query functions (vecplug.embed_query, embed_document, embed_documents): {self.query_functions}")
        if self.settings_changed:
            lines.append("  settings changed: " + ", ".join(self.settings_changed))
        if self.server:
            lines.append(f"  server model: {self.server.name} ({self.server.dimensions} dimensions, "
                         f"fingerprint {self.server.fingerprint})")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclasses.dataclass
class _Facts:
    database: str
    role: str
    superuser: bool
    vector_schema: str | None
    vector_available: bool
    plpython_available: bool
    plpython_installed: bool
    schema_owner: str | None
    may_act_as_owner: bool
    has_migrations_table: bool


def install(conn, server_url: str | None = None, *, api_key: str | None = None,
            connect_timeout: float | None = None, read_timeout: float | None = None,
            _sql_root: Path | None = None) -> InstallReport:
    """Install or upgrade schema ``vecplug`` in ``conn``'s database; return what was done.

    ``conn`` is a psycopg 3 connection or a DSN string. ``server_url`` (the
    ``vecplug serve`` the SQL functions call), ``api_key`` (``""`` clears it)
    and the timeouts (seconds) are stored in ``vecplug.settings``; None keeps
    what is there. With a URL, the server is asked for its model, which is
    recorded too. ``_sql_root`` replaces the packaged SQL (tests).
    """
    checked = _checked_settings(server_url, api_key, connect_timeout, read_timeout)
    with connection_for(conn, "pg install") as connection, connection.transaction():
        connection.execute(LOCK)
        facts = _facts(connection)
        report = InstallReport(facts.database, facts.role, 0, sqlfiles.latest_version(_sql_root))
        if facts.schema_owner and not facts.may_act_as_owner:
            raise InstallError(
                f"schema vecplug in database {facts.database!r} belongs to role {facts.schema_owner!r}; "
                f"role {facts.role!r} cannot change it: run install as {facts.schema_owner!r} (or a superuser)")
        old_search_path = connection.execute("SELECT current_setting('search_path')").fetchone()[0]
        _set_search_path(connection, "pg_catalog, pg_temp")
        _ensure_pgvector(connection, facts, report)
        applied = _apply_core(connection, facts, report, _sql_root)
        _apply_query_layer(connection, facts, report, applied, _sql_root)
        _store_settings(connection, checked, report)
        _set_search_path(connection, old_search_path)
    return report


def uninstall(conn, cascade: bool = False) -> list[str]:
    """Drop schema ``vecplug`` and everything in it; return the objects outside it dropped along.

    Objects elsewhere that depend on vecplug (a column default calling
    ``vecplug.embed_document``, a view, a trigger) make it refuse, naming
    them, unless ``cascade``. A vectorizer's triggers are named as the
    vectorizer, with the ``vecplug.drop_vectorizer`` call that removes it:
    seven trigger names per vectorizer said nothing about what to do.
    pgvector and plpython3u stay: others may use them.
    """
    with connection_for(conn, "pg uninstall") as connection, connection.transaction():
        connection.execute(LOCK)
        if connection.execute("SELECT to_regnamespace('vecplug')").fetchone()[0] is None:
            return []
        dependents = [row[0] for row in connection.execute("SELECT object FROM vecplug.dependents()")]
        if dependents and not cascade:
            raise InstallError(_refusal(connection, dependents))
        connection.execute("SELECT set_config('vecplug.cascade', %s, true)", ["on" if cascade else "off"])
        connection.execute((sqlfiles.sql_dir() / "uninstall.sql").read_text(encoding="utf-8"))
    return dependents


SHOWN_DROP_CALLS = 5  # past this, the message says how to list them instead of listing them all

# The vectorizers whose triggers depend on vecplug (their trigger functions are vecplug's), each with the
# descriptions of those triggers as vecplug.dependents() gives them.
VECTORIZER_TRIGGERS = r"""
    SELECT quote_ident(v.schema_name) || '.' || quote_ident(v.table_name), v.embedding_column,
           array_agg(pg_describe_object('pg_trigger'::regclass, t.oid, 0))
    FROM vecplug.vectorizer_columns v
    JOIN pg_trigger t ON (t.tgrelid = v.source OR pg_partition_root(t.tgrelid) = v.source)  -- partitions: clones
                     AND t.tgname LIKE 'vecplug\_' || v.id || '\_%'
    JOIN pg_proc p ON p.oid = t.tgfoid AND p.pronamespace = 'vecplug'::regnamespace
    WHERE v.table_exists
    GROUP BY 1, 2 ORDER BY 1, 2
"""


def _refusal(connection, dependents: list[str]) -> str:
    """Why uninstall refuses: the vectorizers (how many, on which tables, how to drop them), then the rest by name."""
    vectorizers = []
    if connection.execute("SELECT to_regclass('vecplug.vectorizer_columns')").fetchone()[0] is not None:
        # the search_path vecplug.dependents() describes objects under, so names compare equal ("public.docs");
        # for this transaction only, which rolls back when uninstall refuses
        connection.execute("SELECT set_config('search_path', 'pg_catalog, pg_temp', true)")
        vectorizers = connection.execute(VECTORIZER_TRIGGERS).fetchall()
    triggers = {trigger for _, _, names in vectorizers for trigger in names}
    others = [name for name in dependents if name not in triggers]
    parts = []
    if vectorizers:
        tables: dict[str, int] = {}
        for table, _, _ in vectorizers:
            tables[table] = tables.get(table, 0) + 1
        where = ", ".join(table if count == 1 else f"{table} ({count})" for table, count in tables.items())
        count = len(vectorizers)
        calls = [f"SELECT vecplug.drop_vectorizer({_literal(table)}, {_literal(column)})"
                 for table, column, _ in vectorizers]
        if count <= SHOWN_DROP_CALLS:
            how = "; ".join(calls)
        else:
            how = ("SELECT vecplug.drop_vectorizer(table, embedding_column) for each (SELECT vectorizer FROM "
                   f"vecplug.status lists them), e.g. {calls[0]}")
        parts.append(f"{count} vectorizer{'s' if count > 1 else ''} on table{'s' if len(tables) > 1 else ''} "
                     f"{where} (their triggers); drop {'them' if count > 1 else 'it'} with {how} "
                     "(the vector columns stay)")
    if others:
        parts.append(("Other objects: " if vectorizers else "") + "; ".join(others))
    return ("objects outside schema vecplug depend on it: " + ". ".join(parts)
            + ". Drop them first, or uninstall with cascade (--cascade) to drop them too. Nothing was changed.")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def recorded_settings(conn) -> dict | None:
    """``vecplug.settings`` as ``vecplug pg install`` recorded them (name -> value); None if this role may not read them.

    Only the installing role (or one it granted membership) may: the table
    holds the API key. ``{}`` where vecplug is not installed (nothing was
    recorded; the caller says what is missing). The right is asked first, so
    a worker of another role leaves no "permission denied" in the server's
    log; the read is in a transaction of its own (a savepoint inside the
    caller's), so a refusal all the same leaves the connection usable.
    """
    import psycopg

    try:
        with conn.transaction():
            exists, readable = conn.execute(
                "SELECT t.oid IS NOT NULL, t.oid IS NOT NULL AND has_table_privilege(t.oid, 'SELECT') "
                "FROM (SELECT to_regclass('vecplug.settings') AS oid) AS t").fetchone()
            if not exists:
                return {}
            if not readable:
                return None
            return dict(conn.execute("SELECT name, value FROM vecplug.settings").fetchall())
    except psycopg.errors.InsufficientPrivilege:
        return None


def server_api_key(given: str | None, conn) -> str | None:
    """The API key to send a ``vecplug serve``: ``given_api_key(given)``, else the one install recorded.

    The recorded key is used whatever server URL the caller names: the
    worker and ``reembed`` often reach the server under another name than
    the database does (``localhost`` against a compose service name), and a
    role that may read the key could send it anywhere anyway.
    """
    return given_api_key(given) or (recorded_settings(conn) or {}).get("api_key") or None


def given_api_key(given: str | None) -> str | None:
    """``given``, else the key ``vecplug.settings`` finds (a key file, ``$VECPLUG_API_KEY``): the keys a caller
    hands over, which win over the recorded one. ``""`` counts as not given here."""
    from vecplug.settings import Settings

    return Settings(api_key=given or None).api_key_value() or None


def _checked_settings(server_url, api_key, connect_timeout, read_timeout) -> dict:
    """The settings to store, validated before anything touches the database."""
    checked = {}
    if server_url is not None:
        location = urllib.parse.urlsplit(server_url)
        if location.scheme not in ("http", "https") or not location.hostname:
            raise ValueError(f"server_url must be an http:// or https:// URL, not {server_url!r}")
        checked["server_url"] = server_url.rstrip("/")
    if api_key is not None:
        if any(character.isspace() for character in api_key):
            raise ValueError("the API key contains white space (a stray newline in the key file?)")
        checked["api_key"] = api_key or None
    for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
        if value is not None:
            if not 0 < float(value) <= MAX_TIMEOUT_S:
                raise ValueError(f"{name} must be between 0 and {MAX_TIMEOUT_S} seconds, not {value!r}")
            checked[name] = f"{float(value):g}"
    return checked


def _facts(connection) -> _Facts:
    row = connection.execute("""
        SELECT current_database(), current_user, r.rolsuper,
               (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                WHERE e.extname = 'vector'),
               EXISTS (SELECT FROM pg_available_extensions WHERE name = 'vector'),
               EXISTS (SELECT FROM pg_available_extensions WHERE name = 'plpython3u'),
               EXISTS (SELECT FROM pg_extension WHERE extname = 'plpython3u'),
               (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'vecplug'),
               coalesce((SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace
                         WHERE nspname = 'vecplug'), true),
               to_regclass('vecplug.migrations') IS NOT NULL
        FROM pg_roles r WHERE r.rolname = current_user
    """).fetchone()
    return _Facts(*row)


def _set_search_path(connection, value: str) -> None:
    connection.execute("SELECT set_config('search_path', %s, true)", [value])


def _ensure_pgvector(connection, facts: _Facts, report: InstallReport) -> None:
    if facts.vector_schema:
        return
    if not facts.vector_available:
        report.notes.append(
            "pgvector is not installed on this server, so there is no vector type: the query functions "
            "cannot be installed and embeddings cannot be stored. Install pgvector, run CREATE EXTENSION "
            "vector, then run install again.")
        return
    try:
        with connection.transaction():  # a savepoint: a refusal must not abort the install
            connection.execute("CREATE EXTENSION vector SCHEMA public")
    except Exception as error:  # psycopg.errors.InsufficientPrivilege, mostly
        report.notes.append(
            f"pgvector is available but not enabled in database {facts.database!r}, and role {facts.role!r} "
            f"may not enable it ({str(error).strip()}): ask a superuser, or your provider's console, to run "
            "CREATE EXTENSION vector, then run install again.")
        return
    facts.vector_schema = "public"
    report.applied.append("CREATE EXTENSION vector")


def _applied(connection) -> dict[str, str | None]:
    return dict(connection.execute("SELECT name, checksum FROM vecplug.migrations").fetchall())


def _record(connection, file: sqlfiles.SqlFile, kind: str) -> None:
    from vecplug import __version__

    connection.execute("""
        INSERT INTO vecplug.migrations (name, kind, checksum, vecplug_version) VALUES (%s, %s, %s, %s)
        ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum,
            vecplug_version = EXCLUDED.vecplug_version, applied_at = now()
    """, [file.name, kind, file.checksum, __version__])


def _apply_core(connection, facts: _Facts, report: InstallReport, root: Path | None) -> dict[str, str | None]:
    if not facts.has_migrations_table:
        connection.execute(sqlfiles.bootstrap(root).text())
    applied = _applied(connection)
    migrations = sqlfiles.migrations(root)
    known = {file.name for file in migrations}
    done = [name for name in applied if name[:1].isdigit()]
    report.previous_version = max((int(name.split("_", 1)[0]) for name in done), default=0)
    unknown = sorted(set(done) - known)
    if unknown:
        raise InstallError(
            f"database {facts.database!r} has vecplug schema version {report.previous_version} "
            f"(migrations {', '.join(unknown)}), newer than this vecplug's {report.version}: "
            "upgrade vecplug (pip install -U vecplug). Nothing was changed.")
    _refuse_changed_migrations(facts, migrations, applied)
    for file in migrations:
        if file.name not in applied:
            connection.execute(file.text())
            _record(connection, file, "migration")
            report.applied.append(f"{file.name}.sql")
    for file in sqlfiles.repeatables("core", root):
        if applied.get(file.name) != file.checksum:
            connection.execute(file.text())
            _record(connection, file, "repeatable")
            report.applied.append(file.name)
    return applied


def _refuse_changed_migrations(facts: _Facts, migrations: list[sqlfiles.SqlFile], applied: dict) -> None:
    """Refuse when a migration the database ran differs from this vecplug's file of the same name.

    A migration runs once: a change to it would reach new installs only, and
    upgraded databases would silently differ from them (tests/postgres/test_pg_released_migrations.py
    keeps released files frozen). ``psql -f install.sql`` records no checksum: nothing to compare.
    """
    changed = [file for file in migrations if applied.get(file.name) not in (None, file.checksum)]
    if changed:
        names = ", ".join(f"{file.name}.sql (sha256 {applied[file.name][:12]}... applied, "
                          f"{file.checksum[:12]}... now)" for file in changed)
        raise InstallError(
            f"database {facts.database!r} ran migrations that have changed since: {names}. A migration that ran "
            "must never change (this database would not get the change, and would differ from new installs). "
            "Developing vecplug: put the change into a new migration instead. Otherwise this vecplug build is "
            "broken: install a released one. Nothing was changed.")


def _apply_query_layer(connection, facts: _Facts, report: InstallReport, applied: dict, root: Path | None) -> None:
    files = sqlfiles.repeatables("query", root)
    outdated = [file for file in files if applied.get(file.name) != file.checksum]
    installed_before = any(file.name in applied for file in files)
    if not outdated:
        report.query_functions = "up to date"
        return
    reason = _why_no_query_layer(facts)
    if reason:
        report.query_functions = "left as they were (outdated)" if installed_before else "not installed"
        report.notes.append(reason)
        return
    if not facts.plpython_installed:
        connection.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
        report.applied.append("CREATE EXTENSION plpython3u")
    from psycopg import sql

    search_path = sql.SQL("vecplug, {}, pg_catalog").format(sql.Identifier(facts.vector_schema))
    _set_search_path(connection, search_path.as_string(connection))
    for file in outdated:
        connection.execute(file.text())
        _record(connection, file, "repeatable")
        report.applied.append(file.name)
    _set_search_path(connection, "pg_catalog, pg_temp")
    report.query_functions = "installed"


def _why_no_query_layer(facts: _Facts) -> str | None:
    """Why the plpython3u functions cannot be installed here, and what the user does instead; None if they can."""
    instead = ("Embed queries in your application instead: vecplug_pgvector.search(conn, table, text) runs the "
               "same index-friendly query with the model in your process (or server_url=...).")
    if not facts.vector_schema:
        return "The SQL query functions need pgvector (see above). " + instead
    if not facts.plpython_available:
        return ("plpython3u is not available on this server (as on most managed PostgreSQL), so the SQL "
                "functions vecplug.embed_query / embed_document cannot exist here. " + instead)
    if not facts.superuser:
        return (f"role {facts.role!r} is not a superuser, and only a superuser may create plpython3u functions: "
                "the SQL query functions are not installed (run install again as a superuser to add them). "
                + instead)
    return None


def _store_settings(connection, checked: dict, report: InstallReport) -> None:
    current = dict(connection.execute("SELECT name, value FROM vecplug.settings").fetchall())
    wanted = dict(checked)
    url = report.server_url = wanted.get("server_url", current.get("server_url"))
    if "server_url" in wanted or "api_key" in wanted:
        key = wanted.get("api_key", current.get("api_key"))
        timeout = min(float(wanted.get("read_timeout", current.get("read_timeout") or 60)), 30.0)
        _record_served_model(url, key, timeout, current, wanted, report)
    for name, value in wanted.items():
        if current.get(name) != value:
            connection.execute("UPDATE vecplug.settings SET value = %s, updated_at = now() WHERE name = %s",
                               [value, name])
            report.settings_changed.append(name)


def _record_served_model(url, api_key, timeout, current: dict, wanted: dict, report: InstallReport) -> None:
    """Ask the server for its model and put its name, fingerprint and dimensions into ``wanted``."""
    from vecplug.client import RemoteModel

    try:
        served = RemoteModel(url, api_key=api_key or "", timeout=timeout, retry_seconds=0).spec
    except ServerError as error:
        if url != current.get("server_url"):
            wanted.update(model=None, model_fingerprint=None, dimensions=None, matryoshka_dims=None)
        report.notes.append(
            f"could not ask the embedding server for its model: {error} The URL is recorded; the query "
            "functions fail until the server answers. Run install again once it runs, to record its model "
            "(its fingerprint guards against a model swap).")
        return
    report.server = served
    previous = current.get("model_fingerprint")
    if previous and previous != served.fingerprint:
        report.notes.append(
            f"the server's model changed: recorded {current.get('model')!r} (fingerprint {previous}), now "
            f"{served.name!r} (fingerprint {served.fingerprint}). Vectors stored with the old model are not "
            "comparable with the new one's: re-embed them.")
    wanted.update(model=served.name, model_fingerprint=served.fingerprint, dimensions=str(served.dimensions))
    wanted.update(matryoshka_dims=recorded_sizes(served))  # for create_vectorizer


def recorded_sizes(spec) -> str | None:
    """The vector sizes create_vectorizer may accept for the served model, comma-separated; None: any size.

    A model trained for Matryoshka cuts lists its sizes; one that was not (and
    does not say ``any_dimensions``) has its full size alone, so a
    vectorizer asking for fewer is refused when it is created, not row by row
    when the server refuses to cut.
    """
    if spec.matryoshka_dims:
        return ",".join(map(str, spec.matryoshka_dims))
    return None if spec.any_dimensions else str(spec.dimensions)
