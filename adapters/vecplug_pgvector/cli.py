"""``vecplug pg ...``: install, uninstall, and where the SQL is. Thin: the work is in ``installer``."""
from __future__ import annotations

import click

from vecplug.cli_options import dsn_option, server_options, timeout_options


@click.group()
def pg():
    """PostgreSQL/pgvector: schema vecplug and its SQL embedding functions."""


@pg.command()
@dsn_option()
@server_options(url_help="The `vecplug serve` the SQL functions call, e.g. http://127.0.0.1:8000.",
                key_otherwise="keep the key recorded before")
@timeout_options()
def install(dsn, server_url, api_key_file, connect_timeout, read_timeout):
    """Install or upgrade schema vecplug; print what was installed and what could not be."""
    from vecplug.settings import Settings

    from .installer import install as run_install

    api_key = Settings(api_key_file=api_key_file).api_key_value()
    try:
        report = run_install(dsn, server_url, api_key=api_key, connect_timeout=connect_timeout,
                             read_timeout=read_timeout)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    click.echo(str(report))


@pg.command()
@dsn_option()
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
