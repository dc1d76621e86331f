"""``vecplug pg ...``: install, uninstall, and where the SQL is. Thin: the work is in ``installer``."""
from __future__ import annotations

import os

import click


@click.group()
def pg():
    """PostgreSQL/pgvector: schema vecplug and its SQL embedding functions."""


DSN_HELP = "libpq connection string or URI (default: the PG* environment variables)."


@pg.command()
@click.option("--dsn", default="", help=DSN_HELP)
@click.option("--server-url", default=None, help="The `vecplug serve` the SQL functions call, e.g. http://127.0.0.1:8000.")
@click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File holding the server's API key (default: $VECPLUG_API_KEY, if set).")
@click.option("--connect-timeout", type=float, default=None, help="Seconds to wait for a connection (default 5).")
@click.option("--read-timeout", type=float, default=None, help="Seconds to wait for an answer (default 60).")
def install(dsn, server_url, api_key_file, connect_timeout, read_timeout):
    """Install or upgrade schema vecplug; print what was installed and what could not be."""
    from .installer import install as run_install

    api_key = os.environ.get("VECPLUG_API_KEY")
    if api_key_file:
        with open(api_key_file, encoding="utf-8") as key_file:
            api_key = key_file.read().strip()
    try:
        report = run_install(dsn, server_url, api_key=api_key, connect_timeout=connect_timeout,
                             read_timeout=read_timeout)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    click.echo(str(report))


@pg.command()
@click.option("--dsn", default="", help=DSN_HELP)
@click.option("--cascade", is_flag=True, help="Also drop objects outside schema vecplug that depend on it.")
def uninstall(dsn, cascade):
    """Remove schema vecplug and everything in it (pgvector and plpython3u stay)."""
    from .installer import uninstall as run_uninstall

    dropped = run_uninstall(dsn, cascade=cascade)
    click.echo("schema vecplug removed" + (f"; also dropped: {'; '.join(dropped)}" if dropped else ""))


@pg.command("sql-dir")
def sql_dir():
    """Print the folder of install.sql, for `psql -f` without Python."""
    from .sqlfiles import sql_dir as packaged

    click.echo(str(packaged()))
