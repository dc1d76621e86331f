"""``vecplug doctor --dsn``: is PostgreSQL ready for vecplug, and does it agree with the server on the model?

Read-only: it connects, reads the catalog and ``vecplug.settings``, and asks
the server (the one given, else the one the installer recorded) for its model.
"""
from __future__ import annotations

SECTION = "PostgreSQL"


def check(name: str, status: str, detail: str) -> dict:
    return {"section": SECTION, "name": name, "status": status, "detail": detail}


def doctor_checks(dsn: str, server_url: str | None, api_key: str | None) -> list[dict]:
    try:
        import psycopg  # noqa: F401 - installed at all?
    except ImportError:
        return [check("psycopg", "fail", "not installed: pip install \".[postgres]\" in the vecplug checkout")]
    from .connection import connect

    try:
        connection = connect(dsn, "doctor")
    except Exception as error:
        return [check("reachable", "fail", f"could not connect: {' '.join(str(error).split())}")]
    with connection:
        return _database_checks(connection, server_url, api_key)


def _database_checks(connection, server_url, api_key) -> list[dict]:
    import psycopg

    version, database, role, superuser = connection.execute(
        "SELECT current_setting('server_version'), current_database(), current_user, "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)").fetchone()
    checks = [check("reachable", "ok", f"PostgreSQL {version}, database {database!r} as {role!r}"
                                       + (" (superuser)" if superuser else ""))]
    checks.append(_extension(connection, "vector", "pgvector", required=True,
                             missing="install pgvector on the server (the docker compose image has it)"))
    checks.append(_extension(connection, "plpython3u", "plpython3u", required=False,
                             missing="not available (as on most managed PostgreSQL): the SQL functions "
                                     "vecplug.embed_query/embed_document cannot exist; vecplug_pgvector.search "
                                     "embeds in the application instead"))
    installed = connection.execute("SELECT to_regclass('vecplug.migrations') IS NOT NULL").fetchone()[0]
    if not installed:
        checks.append(check("schema vecplug", "warn", "not installed: vecplug pg install --dsn ... --server-url ..."))
        return checks
    migrations = [row[0] for row in connection.execute("SELECT name FROM vecplug.migrations")]
    schema_version = max((int(name.split("_", 1)[0]) for name in migrations if name[:1].isdigit()), default=0)
    functions = connection.execute(
        "SELECT EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'vecplug' AND p.proname = 'embed_query')").fetchone()[0]
    checks.append(check("schema vecplug", "ok", f"version {schema_version}; SQL query functions "
                                                + ("installed" if functions else "not installed")))
    if schema_version >= 3:
        checks.append(_worker_role(connection, role))
    try:
        with connection.transaction():
            settings = dict(connection.execute("SELECT name, value FROM vecplug.settings").fetchall())
    except psycopg.errors.InsufficientPrivilege:
        checks.append(check("recorded model", "info", f"role {role!r} may not read vecplug.settings (only the role "
                                                      "that installed vecplug may): connect as that role to check it"))
        return checks
    recorded = settings.get("model_fingerprint")
    checks.append(check("recorded model", "info" if recorded else "warn",
                        f"{settings.get('model')} (fingerprint {recorded}, {settings.get('dimensions')} dims) from "
                        f"{settings.get('server_url')}" if recorded else
                        f"none recorded (server_url {settings.get('server_url')!r}): run vecplug pg install "
                        "--server-url URL while the server runs"))
    url = server_url or settings.get("server_url")
    if url and recorded:
        checks.append(_agreement(url, api_key or settings.get("api_key"), recorded, settings.get("model")))
    return checks


def _worker_role(connection, role: str) -> dict:
    """Which vectorizers a worker connected as this role would serve, and why not the others."""
    rows = connection.execute(
        "SELECT id, vectorizer, vecplug.worker_refusal(id) FROM vecplug.status ORDER BY id").fetchall()
    refused = [f"{vectorizer_id} ({name}): {why}" for vectorizer_id, name, why in rows if why]
    if not rows:
        return check("worker role", "info", f"no vectorizers that role {role!r} may see")
    if not refused:
        return check("worker role", "ok", f"a worker connected as {role!r} serves all {len(rows)} vectorizers it sees")
    return check("worker role", "warn", f"a worker connected as {role!r} serves {len(rows) - len(refused)} of "
                                        f"{len(rows)} vectorizers; not " + "; ".join(refused))


def _extension(connection, name: str, label: str, required: bool, missing: str) -> dict:
    installed, available = connection.execute(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = %s), "
        "EXISTS (SELECT FROM pg_available_extensions WHERE name = %s)", [name, name]).fetchone()
    if installed:
        return check(label, "ok", f"version {installed}, enabled")
    if available:
        return check(label, "info", "available, not enabled yet (vecplug pg install enables it)")
    return check(label, "fail" if required else "info", missing)


def _agreement(url: str, api_key: str | None, recorded: str, recorded_name: str | None) -> dict:
    """The server's model against the one the database recorded at install: vectors must come from one model."""
    from vecplug.client import RemoteModel
    from vecplug.errors import ServerError

    try:
        served = RemoteModel(url, api_key=api_key, timeout=10, retry_seconds=2).spec
    except (ServerError, OSError, ValueError) as error:
        return check("server agrees", "fail", f"could not ask {url} for its model: {' '.join(str(error).split())}")
    if served.fingerprint == recorded:
        return check("server agrees", "ok", f"{url} serves {served.name} with the recorded fingerprint")
    return check("server agrees", "fail", f"{url} serves {served.name} ({served.fingerprint}), but the database "
                                          f"recorded {recorded_name} ({recorded}): stored vectors are not comparable; "
                                          "point at the original model's server, or re-embed and run vecplug pg "
                                          "install again")
