"""Hook implementations of the pgvector adapter (import-light): the ``vecplug pg`` commands."""
from __future__ import annotations

import vecplug


@vecplug.hookimpl
def vecplug_register_commands(cli):
    from . import cli_vectorizers  # noqa: F401  (adds worker, reembed and status to `vecplug pg`)
    from .cli import pg

    cli.add_command(pg)
