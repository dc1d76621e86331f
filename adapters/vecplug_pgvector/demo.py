"""The PostgreSQL part of ``vecplug demo --dsn``: what an application does, in plain SQL.

A table in schema ``vecplug_demo`` (dropped and made afresh each run), a
vectorizer on it (``vecplug.create_vectorizer``), rows inserted with plain
``INSERT``s, the worker embedding what the triggers queued (``vecplug pg
worker --once``, run in this process), and every question asked with
``ORDER BY embedding <=> vecplug.embed_query(...)``. The SQL functions and
the worker call the demo's ``vecplug serve`` (the model the demo hands over
is a ``RemoteModel`` of it).

The database is left as it was found but for schema ``vecplug_demo``, kept
for a look in psql: schema ``vecplug`` is installed only when missing, and
then removed at the end (it would point at the demo's server). An
installation that calls another server is never changed: the demo asks for
that server's ``--server-url`` instead.
"""
from __future__ import annotations

SCHEMA = "vecplug_demo"
TABLE = f"{SCHEMA}.docs"
SHOWN_CHARACTERS = 40  # of a document, in the SQL and answers shown


def shortened(text: str, characters: int = SHOWN_CHARACTERS) -> str:
    return text if len(text) <= characters else text[: characters - 1] + "…"


def literal(text: str) -> str:
    """An SQL string literal, as the SQL shown to the user spells it."""
    return "'" + text.replace("'", "''") + "'"


class PostgresDemoStore:
    """A ``DemoStore`` (add, search) that is also a ``NarratedStore`` (story, next_steps): see the module docstring."""

    uses_dsn = True

    def __init__(self, dsn: str, model):
        from vecplug import RemoteModel

        from .connection import connect

        if not isinstance(model, RemoteModel):
            raise RuntimeError("the PostgreSQL demo needs its model in a `vecplug serve` (vecplug demo starts one, "
                               "or give --server-url): the SQL functions and the worker call it")
        self.dsn, self.model, self.server_url = dsn, model, model.url
        self.connection = connect(dsn, "demo")
        self.database = self.connection.info.dbname
        self.name = f"PostgreSQL (table {TABLE} in database {self.database})"
        self.installed_here = False
        self.inserted = 0
        self.insert_shown = ""
        self.embedded = 0
        self.first_question: list[str] = []
        try:
            self._check_pgvector()
            self._install_vecplug()
            self._make_table()
        except BaseException:
            self.close()
            raise

    # -- setting up --------------------------------------------------------------------------------------------
    def _check_pgvector(self) -> None:
        available = self.connection.execute(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'vector')").fetchone()[0]
        if not available:
            raise RuntimeError(f"database {self.database!r} has no pgvector: install it "
                               "(the docker compose image has it)")

    def _install_vecplug(self) -> None:
        """``vecplug pg install`` when schema vecplug is missing; else check that it calls the demo's server."""
        import psycopg

        from vecplug.client import base_url
        from vecplug.settings import Settings

        from .installer import install

        if self.connection.execute("SELECT to_regnamespace('vecplug') IS NULL").fetchone()[0]:
            install(self.connection, self.server_url, api_key=Settings().api_key_value())
            self.installed_here = True
        else:
            try:
                recorded = self.connection.execute(
                    "SELECT value FROM vecplug.settings WHERE name = 'server_url'").fetchone()[0]
            except psycopg.errors.InsufficientPrivilege:
                recorded = None  # another role installed it: the SQL functions will say if they disagree
            if recorded and base_url(recorded) != base_url(self.server_url):
                raise RuntimeError(
                    f"vecplug is installed in database {self.database!r} and calls the server {recorded}; the demo "
                    f"changes no installation it did not make: run it with --server-url {recorded}, or on "
                    "another database")
        has_embed_query = self.connection.execute(
            "SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'embed_query' "
            "AND pronamespace = 'vecplug'::regnamespace)").fetchone()[0]
        if not has_embed_query:
            raise RuntimeError(f"database {self.database!r} has no vecplug.embed_query (it needs plpython3u, which "
                               "a superuser installs): see `vecplug pg install --dsn ...`")

    def _make_table(self) -> None:
        with self.connection.transaction():
            self.connection.execute(
                "SELECT vecplug.drop_vectorizer(id) FROM vecplug.status WHERE source = to_regclass(%s)", [TABLE])
            self.connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            self.connection.execute(f"CREATE SCHEMA {SCHEMA}")
            for statement in self._setup_statements():
                self.connection.execute(statement)

    @staticmethod
    def _setup_statements() -> list[str]:
        return [f"CREATE TABLE {TABLE} (id int PRIMARY KEY, body text NOT NULL);",
                f"SELECT vecplug.create_vectorizer('{TABLE}', 'body');"]

    # -- the DemoStore contract --------------------------------------------------------------------------------
    def add(self, ids: list[int], texts: list[str]) -> None:
        """Plain ``INSERT`` (no vectors), then the worker embeds what the vectorizer's triggers queued."""
        from psycopg import sql

        from .worker import Worker

        rows = sql.SQL(", ").join(sql.SQL("({}, {})").format(sql.Literal(key), sql.Literal(text))
                                  for key, text in zip(ids, texts))
        self.connection.execute(sql.SQL("INSERT INTO {}.docs (id, body) VALUES {}").format(
            sql.Identifier(SCHEMA), rows))
        if not self.insert_shown:
            self.insert_shown = (f"INSERT INTO {TABLE} (id, body) VALUES "
                                 f"({ids[0]}, {literal(shortened(texts[0]))}), ...;")
        self.inserted += len(ids)
        report = Worker(self.dsn, server_url=self.server_url, show_progress=False).run(once=True)
        if report.exit_code:
            raise RuntimeError(f"the worker: {report}")
        self.embedded += report.embedded

    def search(self, question: str, limit: int) -> list[tuple[int, float]]:
        """``ORDER BY embedding <=> vecplug.embed_query(question)``: the question is embedded in SQL, by the server."""
        rows = self.connection.execute(
            f"SELECT id, body, embedding <=> vecplug.embed_query(%(q)s) AS distance FROM {TABLE} "
            f"ORDER BY embedding <=> vecplug.embed_query(%(q)s) LIMIT %(limit)s",
            {"q": question, "limit": limit}).fetchall()
        if not self.first_question:
            self.first_question = [
                f"  SELECT id, body, embedding <=> vecplug.embed_query({literal(question)}) AS distance",
                f"  FROM {TABLE}",
                f"  ORDER BY embedding <=> vecplug.embed_query({literal(question)}) LIMIT {limit};",
                *(f"    {key:>3}  {distance:.3f}  {shortened(body, 60)}" for key, body, distance in rows),
            ]
        return [(int(key), 1.0 - float(distance)) for key, _, distance in rows]  # cosine distance

    def close(self) -> None:
        import psycopg

        if self.installed_here and not self.connection.closed:
            from .installer import uninstall

            try:
                uninstall(self.connection, cascade=True)  # it calls the demo's server, which stops now
            except psycopg.Error:
                pass  # the connection broke: the error that broke the demo is the one to show
        self.connection.close()

    # -- the NarratedStore contract ----------------------------------------------------------------------------
    def story(self) -> list[str]:
        with_vector, rows = self.connection.execute(f"SELECT count(embedding), count(*) FROM {TABLE}").fetchone()
        pending, failed = self.connection.execute(
            "SELECT coalesce(sum(pending), 0), coalesce(sum(failed), 0) FROM vecplug.status "
            "WHERE source = to_regclass(%s)", [TABLE]).fetchone()
        queue = "queue empty" if not pending and not failed else f"{pending} rows queued, {failed} failed"
        installed = (f"vecplug pg install (schema vecplug; its SQL functions call {self.server_url})"
                     if self.installed_here else f"schema vecplug was there, calling {self.server_url}")
        return [
            f"PostgreSQL, as an application uses it (database {self.database}):",
            f"  -- {installed}",
            *(f"  {statement}" for statement in self._setup_statements()),
            f"  {self.insert_shown}  -- {self.inserted} rows, no vectors",
            f"  -- the worker (vecplug pg worker --once) embedded {self.embedded} queued rows"
            f"{' (a worker already running here got there first)' if self.embedded < self.inserted else ''}: "
            f"{with_vector}/{rows} rows have a vector, {queue}",
            *self.first_question,
        ]

    def next_steps(self) -> list[str]:
        removed = ("; the demo removed schema vecplug again, as it calls the demo's server"
                   if self.installed_here else "")
        return [
            f"Table {TABLE} stays for a look in psql{removed}. The same by hand:",
            "  vecplug serve --port 8080 &",
            "  vecplug pg install --dsn DSN --server-url http://127.0.0.1:8080",
            "  psql DSN -c \"SELECT vecplug.create_vectorizer('my_table', 'body')\"   "
            "# then INSERT rows as usual",
            "  vecplug pg worker --dsn DSN      # embeds what the triggers queue (--once: until the queue is empty)",
            "  psql DSN -c \"SELECT body FROM my_table ORDER BY embedding <=> vecplug.embed_query('...') LIMIT 3\"",
        ]
