"""``vecplug pg ...``: install, uninstall, and where the SQL is. Thin: the work is in ``installer``.

Every ``vecplug pg`` command fails the same way (``PgCommands``): a malformed
``--dsn`` is refused while the options are read (exit 2), and a database
error is one line that names the fix (exit 1); ``vecplug.cli_errors`` prints it.
"""
from __future__ import annotations

import sys

import click

from vecplug.cli_options import dsn_option, server_options, timeout_options

DEFAULT_SERVER_URL = "http://127.0.0.1:8080"  # where `vecplug serve` listens unless told otherwise


class PgCommands(click.Group):
    """``vecplug pg``: a PostgreSQL error in any subcommand becomes one line with its fix, exit 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as error:
            failure = database_failure(error)
            if failure is None:
                raise
            raise failure from error


def database_failure(error: BaseException):
    """A ``vecplug.cli_errors.Failure`` for a psycopg error that is not vecplug's own already, else None."""
    from vecplug.cli_errors import Failure, one_line
    from vecplug.errors import VecplugError

    psycopg = sys.modules.get("psycopg")  # not imported: the error cannot be one of its
    if psycopg is None or not isinstance(error, psycopg.Error) or isinstance(error, VecplugError):
        return None
    message = one_line(error)
    errors = psycopg.errors
    if isinstance(error, (errors.UndefinedTable, errors.InvalidSchemaName, errors.UndefinedFunction)) \
            and "vecplug" in message:
        return Failure(f"{message}: schema vecplug is not installed in this database (or this role may not see "
                       "it); install it with `vecplug pg install --dsn ...`")
    if isinstance(error, errors.InsufficientPrivilege):
        return Failure(f"PostgreSQL refused: {message}. Connect as a role with that right (the role that ran "
                       "`vecplug pg install` owns schema vecplug)")
    if isinstance(error, psycopg.OperationalError):
        return Failure(f"lost the connection to PostgreSQL ({message}); run the command again once the database "
                       "answers")
    return Failure(f"PostgreSQL: {message}")


def checked_dsn(context, parameter, value):
    """``--dsn``'s callback: a DSN libpq cannot parse is a usage error, before any work."""
    from vecplug.errors import InvalidSettingError

    from .connection import check_dsn

    if value:
        try:
            check_dsn(value)
        except InvalidSettingError as error:
            raise click.BadParameter(str(error), param_hint="'--dsn'") from None
    return value


def pg_dsn_option():
    """``--dsn`` of every ``vecplug pg`` command: the shared option, checked as it is read."""
    return dsn_option(callback=checked_dsn)


@click.group(cls=PgCommands)
def pg():
    """PostgreSQL/pgvector: schema vecplug and its SQL embedding functions."""


@pg.command()
@pg_dsn_option()
@server_options(url_help=f"The `vecplug serve` the SQL functions call, e.g. {DEFAULT_SERVER_URL} (its default "
                         "port). Default: the one recorded before.",
                key_otherwise="keep the key recorded before")
@timeout_options()
def install(dsn, server_url, api_key_file, connect_timeout, read_timeout):
    """Install or upgrade schema vecplug; print what was installed and what could not be."""
    from vecplug.errors import VecplugError
    from vecplug.settings import Settings

    from .installer import install as run_install

    api_key = Settings(api_key_file=api_key_file).api_key_value()
    try:
        report = run_install(dsn, server_url, api_key=api_key, connect_timeout=connect_timeout,
                             read_timeout=read_timeout)
    except ValueError as error:
        if isinstance(error, VecplugError):  # a malformed DSN, a database that does not answer: their own line
            raise
        raise click.BadParameter(str(error)) from None
    click.echo(str(report))
    if server_url is None:
        click.echo(recorded_server_line(report.server_url))


def recorded_server_line(recorded: str | None) -> str:
    """Which server the SQL functions call now that install kept the recorded one, and how to change it."""
    if recorded:
        return (f"  server URL: {recorded} (recorded before; change it with "
                "vecplug pg install --server-url URL)")
    return (f"  server URL: none recorded, so vecplug.embed_query and the sync vectorizers cannot embed yet: "
            f"start `vecplug serve` and run vecplug pg install --server-url {DEFAULT_SERVER_URL}")


@pg.command()
@pg_dsn_option()
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
