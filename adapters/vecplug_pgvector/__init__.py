"""vecplug's PostgreSQL/pgvector adapter: schema ``vecplug``, SQL embedding functions, ``search``.

    import vecplug_pgvector
    vecplug_pgvector.install(conn, server_url="http://127.0.0.1:8080")   # or: vecplug pg install --dsn ...
    vecplug_pgvector.record_model(conn, "docs", "embedding", model)       # after filling a column from Python
    vecplug_pgvector.search(conn, "docs", "how do I ...", k=10)           # query embedded in this process
    vecplug_pgvector.recommend(conn, "docs", positive=[3], negative=[7])  # rows like 3, unlike 7
    vecplug_pgvector.Worker(dsn, server_url=...).run()                   # embed what vectorizers queue

In SQL, once installed: ``ORDER BY embedding <=> vecplug.embed_query('...') LIMIT 10``.

This package is the parent of the ``vecplug`` entry-point module
(``vecplug_pgvector.plugin``), imported by ``vecplug --help``: its modules
import psycopg, pgvector, urllib.request or torch only inside functions.
"""
from __future__ import annotations

from .columns import SearchTargetError, record_model
from .installer import InstallError, InstallReport, install, uninstall
from .search import search
from .sqlfiles import sql_dir
from .reembed import ReembedReport, reembed
from .status import status
from .stores import PostgresStore, StorePermissionError, recommend
from .vectorizers import VectorizerError
from .worker import Worker, WorkerReport

__all__ = ["InstallError", "InstallReport", "SearchTargetError", "install", "record_model", "search", "sql_dir",
           "uninstall"]
__all__ += ["PostgresStore", "StorePermissionError", "recommend"]
__all__ += ["ReembedReport", "VectorizerError", "Worker", "WorkerReport", "reembed", "status"]
