"""Hook implementations of the pgvector adapter (import-light): the ``vecplug pg`` commands."""
from __future__ import annotations

import vecplug


@vecplug.hookimpl
def vecplug_register_commands(cli):
    from . import cli_vectorizers  # noqa: F401  (adds worker, reembed and status to `vecplug pg`)
    from .cli import pg

    cli.add_command(pg)


@vecplug.hookimpl
def vecplug_doctor_checks(dsn, server_url, api_key):
    """``vecplug doctor --dsn``: reachable, pgvector, plpython3u, schema vecplug, and the model it recorded."""
    if not dsn:
        return None
    from .doctor import doctor_checks

    return doctor_checks(dsn, server_url, api_key)


@vecplug.hookimpl
def vecplug_demo_store(folder, dsn, model):
    """``vecplug demo --dsn``: a table in the database the user named; never without a dsn."""
    if not dsn:
        return None
    from .demo import PostgresDemoStore

    return PostgresDemoStore(dsn, model)


@vecplug.hookimpl
def vecplug_open_store(selection):
    """``--dsn --table`` of ``vecplug search/recommend/cluster/dedup``: the table as a VectorStore (else None)."""
    if selection.dsn is None:  # "" is libpq's PG* environment variables
        return None
    from .stores import open_store

    return open_store(selection)
