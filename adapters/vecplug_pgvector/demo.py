"""The PostgreSQL part of ``vecplug demo --dsn``: table ``vecplug_demo`` in the database the user named.

Documents are embedded in this process (the demo's model) and stored with
pgvector; questions go through ``vecplug_pgvector.search``, the same
index-friendly query the SQL route runs. Nothing but ``vecplug_demo`` is
touched, and only because the user gave ``--dsn``.
"""
from __future__ import annotations

TABLE = "vecplug_demo"


class PostgresDemoStore:
    uses_dsn = True

    def __init__(self, dsn: str, model):
        from pgvector.psycopg import register_vector

        from .connection import connect

        self.model = model
        self.connection = connect(dsn, "demo")
        database = self.connection.info.dbname
        self.name = f"PostgreSQL (table {TABLE} in database {database})"
        available = self.connection.execute(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'vector')").fetchone()[0]
        if not available:
            self.connection.close()
            raise RuntimeError(f"database {database!r} has no pgvector: install it (the docker compose image has it)")
        self.connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self.connection)  # numpy rows go in as vectors, as everywhere else in this adapter
        self.connection.execute(f"DROP TABLE IF EXISTS {TABLE}")  # the demo's own table: start afresh
        self.connection.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, body text NOT NULL, "
                                f"embedding vector({int(model.dimensions)}) NOT NULL)")

    def add(self, ids: list[int], texts: list[str]) -> None:
        vectors = self.model.embed_documents(list(texts))
        with self.connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {TABLE} (id, body, embedding) VALUES (%s, %s, %s)",
                               list(zip(ids, texts, vectors)))

    def search(self, question: str, limit: int) -> list[tuple[int, float]]:
        from .search import search

        rows = search(self.connection, TABLE, question, k=limit, model=self.model, columns=["id"])
        return [(int(row["id"]), 1.0 - float(row["distance"])) for row in rows]  # cosine distance

    def close(self) -> None:
        self.connection.close()
