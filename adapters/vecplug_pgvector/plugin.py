"""Hook implementations of the pgvector adapter (import-light): the ``vecplug pg`` commands."""
from __future__ import annotations

import vecplug


@vecplug.hookimpl
def vecplug_register_commands(cli):
    from .cli import pg

    cli.add_command(pg)
