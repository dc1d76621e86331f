"""``vecplug pg worker | reembed | status``: the vectorizers' commands. Thin: the work is in ``worker``, ``reembed``, ``status``."""
from __future__ import annotations

import json
import signal
import sys

import click

from vecplug.cli_options import dimensions_option, model_options, server_options
from vecplug.settings import Settings

from .cli import pg, pg_dsn_option

MODEL_HELP = "Embed in this process with this model (a name or a local directory), instead of a server."
SERVER_HELP = "A `vecplug serve` to embed with."
RECORDED_KEY = "the one vecplug pg install recorded, when this role may read it"


def _local_model_options(purpose: str = ""):
    """``--model``, and ``--device`` / ``--dtype``, which only mean something with it (a server chooses its own)."""
    return model_options(model_help=purpose + MODEL_HELP,
                         device_help="With --model: cpu, cuda or cuda:N (default: cuda if available).",
                         dtype_help="With --model. Default: the fastest that keeps quality on this hardware.")


@pg.command()
@pg_dsn_option()
@server_options(url_help=SERVER_HELP + " Default: the server vecplug pg install recorded.",
                key_otherwise=RECORDED_KEY)
@_local_model_options()
@click.option("--batch-size", type=click.IntRange(1, 4096), default=1024, show_default=True,
              help="Rows per batch (one transaction each), at most: a cap; batches are sized by --batch-tokens.")
@click.option("--batch-tokens", type=click.IntRange(1), default=None,
              help="Tokens of text per batch (default: 8 forward passes of the model, its token budget).")
@click.option("--vectorizer", "vectorizers", multiple=True,
              help="Serve only this vectorizer (id or name, e.g. public.docs.embedding); repeatable. Default: all.")
@click.option("--once", is_flag=True, help="Drain what is queued now, then exit: 0, or 1 when rows are left because of errors.")
@click.option("--max-attempts", type=click.IntRange(1), default=5, show_default=True,
              help="Failures of a row on its own before it moves to vecplug.failed.")
@click.option("--retry-delay", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Seconds before a failed row is tried again, doubling each time (at most an hour).")
@click.option("--poll-interval", type=click.FloatRange(0.1), default=5.0, show_default=True,
              help="Seconds between looks at the queue when no notification comes.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on this port (0: any free one; the URL is logged).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for the metrics (0.0.0.0: all).")
@click.option("--quiet", is_flag=True, help="No progress bar on a terminal.")
def worker(dsn, server_url, model, device, dtype, api_key_file, batch_size, batch_tokens, vectorizers, once,
           max_attempts, retry_delay, poll_interval, metrics_port, metrics_host, quiet):
    """Embed the rows that vectorizers queue (LISTEN for new ones); stop with SIGTERM or Ctrl-C.

    Connect as the role that owns the tables, or as a role with no rights of
    its own that the owner is a member of: the tables' own triggers run as
    this role, so vectorizers whose owner lacks one of its rights are left
    queued, and vecplug.status says why. One worker per owner.

    Logs are JSON lines on stderr, unless stderr is a terminal: then a
    progress bar and plain warnings.
    """
    from .vectorizers import VectorizerError
    from .worker import Worker
    from .worker_telemetry import configure_logging

    if server_url and model:
        raise click.UsageError("give --server-url or --model, not both")
    if (device or dtype) and not model:
        raise click.UsageError("--device and --dtype go with --model (a server chooses its own)")
    _check_model_name(model, device)
    api_key = Settings(api_key_file=api_key_file).api_key_value()
    person = sys.stderr.isatty()
    handler = configure_logging(sys.stderr, structured=not person, level=30 if person else 20)
    try:
        runner = Worker(dsn, model, server_url=server_url, api_key=api_key, device=device, dtype=dtype,
                        batch_size=batch_size, batch_tokens=batch_tokens, vectorizers=list(vectorizers),
                        max_attempts=max_attempts,
                        retry_delay=retry_delay, poll_interval=poll_interval, metrics_port=metrics_port,
                        metrics_host=metrics_host, show_progress=not quiet)
        _stop_on_signals(runner)
        if person:
            click.echo(f"vecplug pg worker: {'draining the queue' if once else 'waiting for rows'} "
                       "(Ctrl-C finishes the batch in hand and stops)", err=True)
        report = runner.run(once=once)
    except (VectorizerError, ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        import logging

        logging.getLogger("vecplug_pgvector").removeHandler(handler)
    if person or once:
        click.echo(str(report), err=True)
    sys.exit(report.exit_code if once else 0)


def _check_model_name(model: str | None, device: str | None = None) -> None:
    """An unknown --model or an impossible --device is a usage error, before the database is asked anything."""
    from vecplug.cli_checks import check_device
    from vecplug.client import is_url
    from vecplug.registry import resolve

    check_device(device)
    if model is not None and not is_url(model):
        resolve(model)


def _stop_on_signals(runner) -> None:
    """First SIGTERM / SIGINT: finish the batch in hand, then exit. A second one: stop now (the batch rolls back)."""
    def handle(number, frame):
        if runner.stopping:
            raise KeyboardInterrupt
        runner.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


@pg.command()
@pg_dsn_option()
@click.option("--vectorizer", required=True, help="The vectorizer: its id or name (see vecplug pg status).")
@_local_model_options("The new model: ")
@server_options(url_help="The new model: " + SERVER_HELP, key_otherwise=RECORDED_KEY)
@dimensions_option("Matryoshka size of the new vectors.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar on a terminal.")
def reembed(dsn, vectorizer, model, server_url, dimensions, device, dtype, api_key_file, batch_size, quiet):
    """Embed every row again with another model into a shadow column, then swap it in (one transaction).

    Queries keep using the current vectors until the swap. Afterwards, run
    workers with the new model.
    """
    from .reembed import reembed as run_reembed
    from .vectorizers import VectorizerError

    if (model is None) == (server_url is None):
        raise click.UsageError("give the new model: --model NAME or --server-url URL")
    _check_model_name(model, device)
    api_key = Settings(api_key_file=api_key_file).api_key_value()
    try:
        report = run_reembed(dsn, vectorizer, model, server_url=server_url, api_key=api_key,
                             dimensions=dimensions, device=device, dtype=dtype, batch_size=batch_size,
                             show_progress=not quiet)
    except (VectorizerError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(report))


@pg.command()
@pg_dsn_option()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per vectorizer, one per line.")
def status(dsn, as_json):
    """Per vectorizer: pending rows and their age, failed rows, rows embedded, truncated texts, last error."""
    from .status import format_table
    from .status import status as read_status

    rows = read_status(dsn)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
    else:
        click.echo(format_table(rows))
