"""The ``vecplug`` command. Subcommands stay thin: the work lives in the library.

Heavy imports happen inside commands so ``vecplug --help`` is instant.
"""
from __future__ import annotations

import json
import sys

import click

from .plugins import load_plugins, pm


@click.group()
@click.version_option(package_name="vecplug")
def cli():
    """vecplug: let a database embed its own text with a local ModernBERT model."""


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--query", "as_query", is_flag=True, help="Embed as search queries (query prompt).")
@click.option("-m", "--model", default=None, help="Model name, alias or directory (default: $VECPLUG_MODEL or nomic-ai/modernbert-embed-base).")
@click.option("--dimensions", type=int, default=None, help="Matryoshka truncation, e.g. 256.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None)
@click.option("--device", default=None, help="cpu or cuda (default: cuda if available).")
def embed(texts, as_query, model, dimensions, dtype, device):
    """Embed TEXTS (or stdin lines when none are given); print one JSON line each."""
    from .registry import load_model

    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin]
    loaded = load_model(model, device=device, dtype=dtype, dimensions=dimensions)
    vectors = loaded.embed(list(texts), "query" if as_query else "document")
    for text, vector in zip(texts, vectors):
        click.echo(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in vector]}))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model.")
def models(as_json):
    """List registered models and their specs."""
    from .registry import registered_models

    for name, registration in sorted(registered_models().items()):
        spec = registration.spec
        if as_json:
            click.echo(json.dumps({**spec.to_dict(), "plugin": registration.plugin}))
            continue
        click.echo(f"{name}  ({registration.plugin})")
        if spec.aliases:
            click.echo(f"  aliases: {', '.join(spec.aliases)}")
        matryoshka = f", matryoshka {list(spec.matryoshka_dims)}" if spec.matryoshka_dims else ""
        click.echo(f"  dimensions: {spec.dimensions}{matryoshka}; max tokens: {spec.max_tokens}")
        for kind, prompt in sorted(spec.prompts.items()):
            click.echo(f"  {kind} prompt: {prompt!r}")


@cli.command()
@click.option("-m", "--model", default=None, help="Model directory (default: a random-weight model of --shape).")
@click.option("--shape", type=click.Choice(["tiny", "small", "base", "large"]), default="base", show_default=True)
@click.option("--quick", is_flag=True, help="Tiny model, few texts: a smoke run that checks the bench works.")
@click.option("--full", is_flag=True, help="Every stdlib paragraph and document (fills GPU batches).")
@click.option("--repeat", type=int, default=1, show_default=True,
              help="Timed passes over the texts; the fastest counts.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="vecplug's dtype (default: the fastest that keeps quality here).")
@click.option("--device", default=None)
@click.option("--corpus", "corpora", multiple=True, type=click.Choice(["paragraphs", "long"]),
              help="Which texts (default: both).")
@click.option("--st-dtype", "st_dtypes", multiple=True, type=click.Choice(["float32", "bfloat16", "float16"]),
              help="sentence-transformers dtypes to compare with (default: float32 and bfloat16).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write results as JSON.")
def bench(model, shape, quick, full, repeat, dtype, device, corpora, st_dtypes, json_path):
    """vecplug vs sentence-transformers on the same model files and texts, side by side."""
    from pathlib import Path

    from . import bench as benchmark

    model_dir = Path(model) if model else benchmark.bench_model_dir("tiny" if quick else shape)
    rows, environment = benchmark.run(
        model_dir, size="quick" if quick else "full" if full else "cpu", dtype=dtype, device=device, repeat=repeat,
        st_dtypes=tuple(st_dtypes) or ("float32", "bfloat16"), corpus_names=tuple(corpora) or ("paragraphs", "long"),
    )
    click.echo(json.dumps(environment))
    click.echo(benchmark.format_table(rows))
    if json_path:
        Path(json_path).write_text(benchmark.to_json(rows, environment))


@cli.command()
def plugins():
    """List loaded plugins and the hooks they implement."""
    from .plugins import get_plugins

    click.echo(json.dumps(get_plugins(), indent=2))


from .server.cli import serve as _serve  # noqa: E402  (click only; the server loads when it runs)

cli.add_command(_serve)


def _register_plugin_commands():
    load_plugins()
    pm.hook.vecplug_register_commands(cli=cli)


_register_plugin_commands()


def main():
    """Entry point: vecplug's own errors print as one line, not a traceback."""
    from .errors import VecplugError

    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except VecplugError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
