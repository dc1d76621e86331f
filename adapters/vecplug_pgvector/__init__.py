"""vecplug's PostgreSQL/pgvector adapter: schema ``vecplug``, SQL embedding functions, ``search``.

    import vecplug_pgvector
    vecplug_pgvector.install(conn, server_url="http://127.0.0.1:8000")   # or: vecplug pg install --dsn ...
    vecplug_pgvector.search(conn, "docs", "how do I ...", k=10)           # query embedded in this process

In SQL, once installed: ``ORDER BY embedding <=> vecplug.embed_query('...') LIMIT 10``.

This package is the parent of the ``vecplug`` entry-point module
(``vecplug_pgvector.plugin``), imported by ``vecplug --help``: nothing here
imports psycopg, pgvector or torch until a function is called.
"""
from __future__ import annotations

__all__ = ["InstallError", "InstallReport", "SearchTargetError", "install", "search", "sql_dir", "uninstall"]

_LAZY = {
    "install": "installer", "uninstall": "installer", "InstallReport": "installer", "InstallError": "installer",
    "search": "search", "SearchTargetError": "search", "sql_dir": "sqlfiles",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
