"""The ``vecplug`` command. Subcommands stay thin: the work lives in the library.

Heavy imports happen inside commands so ``vecplug --help`` is instant.
"""
from __future__ import annotations

import json
import sys

import click

from .cli_errors import debug_option
from .cli_options import (DTYPE, device_option, dsn_option, dtype_option, model_option, model_options,
                          server_options, server_url_option)
from .plugins import load_plugins, pm
from .settings import DEFAULT_MODEL, MODEL_ENV
from .token_budget import groups_of


@click.group()
@click.version_option(package_name="vecplug")
@debug_option
def cli():
    """vecplug: let a database embed its own text with a local ModernBERT model."""


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("-i", "--input", "input_path", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              default=None, help="Read texts from this file ('-': stdin). Default: stdin when no TEXTS are given.")
@click.option("--input-format", type=click.Choice(["auto", "lines", "jsonl"]), default="auto", show_default=True,
              help="lines: one text per line; jsonl: JSON objects with a text field; auto: jsonl for "
                   ".jsonl/.ndjson files or a first line that is such an object.")
@click.option("--text-field", default="text", show_default=True, help="The JSON lines field holding the text.")
@click.option("-o", "--output", "output_path", default=None,
              help="Write here instead of stdout: a .npy file (float32 rows) or JSON lines.")
@click.option("--query", "as_query", is_flag=True, help="Embed as search queries (query prompt).")
@click.option("--chunk-tokens", type=click.IntRange(min=1), default=None,
              help="Split each text into chunks of at most N of its own tokens; one JSON line per chunk.")
@click.option("--overlap-tokens", type=click.IntRange(min=0), default=None,
              help="With --chunk-tokens: tokens consecutive chunks share (default 0).")
@click.option("--late", is_flag=True, help="With --chunk-tokens: late chunking (each chunk pooled from one pass "
                                           "over the whole text).")
@click.option("--id-field", default="id", show_default=True,
              help="With --chunk-tokens and JSON lines: the field written as each chunk's source "
                   "(else the line number).")
@model_options(dimensions=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal).")
def embed(texts, input_path, input_format, text_field, output_path, as_query, chunk_tokens, overlap_tokens, late,
          id_field, model, dimensions, dtype, device, quiet):
    """Embed TEXTS, a file or stdin, streaming: one JSON line per text (or .npy rows) as they are done.

    Input lines lose their line ending (\\n or \\r\\n); JSON lines keep their other
    fields in the output, with "embedding" added.

    With --chunk-tokens each text is split into chunks (the rules of
    model.embed_chunks) and every chunk is one JSON line: source (the JSON
    line's --id-field, else the line number, from 1), chunk_index, start and
    end (character offsets, half-open), text and embedding. A model URL
    (-m http://...) chunks on that `vecplug serve`.
    """
    from . import embed_io
    from .cli_checks import check_device, check_writable_file
    from .registry import load_model

    if texts and input_path:
        raise click.UsageError("give TEXTS or --input, not both")
    chunking = _check_chunk_options(chunk_tokens, overlap_tokens, late, output_path, as_query)
    check_writable_file(output_path, "--output")
    check_device(device)
    # before reading any input: load_model refuses impossible settings (dimensions beyond the model ...)
    # with InvalidSettingError before it loads weights, and main() makes that a usage error
    loaded = load_model(model, device=device, dtype=dtype, dimensions=dimensions)
    lines, total, source = _embed_input(texts, input_path)
    first_line, lines = embed_io.peek_first_line(iter(lines))
    if input_format == "auto":
        input_format = "lines" if texts else embed_io.detect_input_format(input_path, first_line, text_field)
    records = embed_io.InputRecords(lines, input_format, text_field, source)
    if chunking:
        _embed_chunked(records, total, output_path, loaded, quiet, chunking, id_field)
    else:
        _embed_stream(records, total, output_path, "query" if as_query else "document", loaded, quiet)


def _check_chunk_options(chunk_tokens, overlap_tokens, late, output_path, as_query) -> dict | None:
    """The chunk settings for ``embed_chunks``, None without --chunk-tokens; options that do not fit are refused."""
    from .chunking import check_chunking
    from .errors import InvalidSettingError

    if chunk_tokens is None:
        given = [name for name, value in (("--overlap-tokens", overlap_tokens is not None), ("--late", late)) if value]
        if given:
            raise click.UsageError(f"{' and '.join(given)} {'only work' if len(given) > 1 else 'only works'} with "
                                   "--chunk-tokens N (the chunk size in tokens)")
        return None
    if as_query:
        raise click.UsageError("--query does not work with --chunk-tokens: chunks are embedded as documents")
    if output_path and output_path.endswith(".npy"):
        raise click.UsageError("--chunk-tokens writes JSON lines (each chunk with its source, offsets and text); "
                               ".npy holds bare vectors only. Write to stdout or a .jsonl file.")
    try:
        chunk_tokens, overlap_tokens = check_chunking(chunk_tokens, overlap_tokens or 0)
    except InvalidSettingError as error:
        raise click.UsageError(f"--overlap-tokens: {error}") from None
    return {"chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens, "late": late}


# How many texts ``vecplug embed --chunk-tokens`` chunks at once: enough for full forward passes
# (a long text alone gives many chunks), bounded so memory stays flat and lines keep coming.
CHUNK_GROUP_TEXTS = 64
CHUNK_GROUP_CHARS = 1_000_000


def _embed_chunked(records, total, output_path, loaded, quiet, chunking, id_field):
    from . import embed_io
    from .progress import progress

    if output_path and output_path != "-":
        writer = embed_io.ChunkLinesWriter(open(output_path, "w", encoding="utf-8"), owns_stream=True)
    else:
        writer = embed_io.ChunkLinesWriter(sys.stdout)
    try:
        with progress(total=total, desc="chunking", unit="text", quiet=quiet) as bar:
            for group in groups_of(records, CHUNK_GROUP_TEXTS, CHUNK_GROUP_CHARS):
                results = loaded.embed_chunks(group, **chunking)
                writer.write(records.take_sources(len(group), id_field), results)
                bar.update(len(group))
    finally:
        writer.close()


def _embed_input(texts, input_path):
    """(lines, total or None, name for errors): arguments, a file (counted first, for the bar) or stdin."""
    from . import embed_io

    if texts:
        return list(texts), len(texts), "argument"
    if input_path and input_path != "-":
        with open(input_path, "rb") as handle:
            total = sum(1 for _ in handle)

        def file_lines():
            with open(input_path, "rb") as handle:
                yield from embed_io.decoded_lines(handle, input_path)

        return file_lines(), total, input_path
    if sys.stdin.isatty():  # a person at a terminal: say why nothing happens yet, and how to finish
        click.echo("reading texts from stdin, one per line (Ctrl-D to end)", err=True)
    return embed_io.decoded_lines(getattr(sys.stdin, "buffer", sys.stdin), "stdin"), None, "stdin"


def _embed_stream(records, total, output_path, kind, loaded, quiet):
    from pathlib import Path

    from . import embed_io
    from .progress import progress

    if output_path and output_path.endswith(".npy"):
        writer = embed_io.NpyWriter(Path(output_path), loaded.dimensions)
    elif output_path and output_path != "-":
        writer = embed_io.JsonLinesWriter(open(output_path, "w", encoding="utf-8"), owns_stream=True)
    else:
        writer = embed_io.JsonLinesWriter(sys.stdout)
    try:
        with progress(total=total, desc="embedding", unit="text", quiet=quiet) as bar:
            for chunk in loaded.iter_embed_chunks(records, kind):
                writer.write(records.take(len(chunk)), chunk)
                bar.update(len(chunk))
    finally:
        writer.close()


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
@model_option("Model directory (default: a random-weight model of --shape).")
@click.option("--shape", type=click.Choice(["tiny", "small", "base", "large"]), default="base", show_default=True)
@click.option("--quick", is_flag=True, help="Tiny model, few texts: a smoke run that checks the bench works.")
@click.option("--full", is_flag=True, help="Every stdlib paragraph and document (fills GPU batches).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Timed passes over the texts; the fastest counts.")
@dtype_option("vecplug's dtype (default: the fastest that keeps quality here).")
@device_option()
@click.option("--corpus", "corpora", multiple=True, type=click.Choice(["paragraphs", "long"]),
              help="Which texts (default: both).")
@click.option("--st-dtype", "st_dtypes", multiple=True, type=DTYPE,
              help="sentence-transformers dtypes to compare with (default: float32 and bfloat16).")
@click.option("--st-backend", "st_backends", multiple=True, type=click.Choice(["onnx", "openvino"]),
              help="Also sentence-transformers' ONNX or OpenVINO back-end (repeatable; needs optimum).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write results as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal).")
def bench(model, shape, quick, full, repeat, dtype, device, corpora, st_dtypes, st_backends, json_path, quiet):
    """vecplug vs sentence-transformers on the same model files and texts, side by side."""
    from pathlib import Path

    from . import bench as benchmark
    from .cli_checks import check_device, check_writable_file

    check_writable_file(json_path, "--json")
    check_device(device)
    if model and not Path(model).is_dir():
        raise click.BadParameter(f"{model} is not a model directory (the bench compares with sentence-transformers "
                                 "on the same files)", param_hint="'--model'")
    from .bench_references import missing_backend_line, tokenizer_class_problem

    if missing := missing_backend_line(st_backends):  # before any model loads or timing starts
        raise click.BadParameter(missing, param_hint="'--st-backend'")
    model_dir = Path(model) if model else benchmark.bench_model_dir("tiny" if quick else shape)
    if unloadable := tokenizer_class_problem(model_dir):
        raise click.BadParameter(unloadable, param_hint="'--model'")
    rows, environment = benchmark.run(
        model_dir, size="quick" if quick else "full" if full else "cpu", dtype=dtype, device=device, repeat=repeat,
        st_dtypes=tuple(st_dtypes) or ("float32", "bfloat16"), corpus_names=tuple(corpora) or ("paragraphs", "long"),
        quiet=quiet, st_backends=tuple(dict.fromkeys(st_backends)),
    )
    click.echo(json.dumps(environment))
    click.echo(benchmark.header_line(environment))
    click.echo(benchmark.format_table(rows))
    if json_path:
        Path(json_path).write_text(benchmark.to_json(rows, environment))


@cli.command()
@model_option("Model name, alias or directory (default: $VECPLUG_MODEL or nomic-ai/modernbert-embed-base, "
              "else the offline vecplug-minilm plugin).")
@dsn_option("Also fill and query this PostgreSQL database the way an application would: a vectorizer, plain SQL "
            "inserts, the worker, vecplug.embed_query (never without it)", optional=True)
@server_url_option("The `vecplug serve` whose model the demo uses (with --dsn, default: one the demo starts on a "
                   "free port and stops at the end).")
@click.option("--tiny", is_flag=True, help="A generated random-weight ModernBERT: mechanics only, meaningless answers.")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=None,
              help="Keep the Chroma and Qdrant stores in this folder (default: a temporary one, removed after).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal).")
def demo(model, dsn, server_url, tiny, folder, quiet):
    """Embed a small shipped corpus into Chroma and Qdrant (and PostgreSQL with --dsn), ask each the same questions."""
    from pathlib import Path

    from .demo.run import run_demo

    if model and tiny:
        raise click.UsageError("give --model or --tiny, not both")
    if folder:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise click.BadParameter(f"cannot create {folder}: {error.strerror}", param_hint="'--dir'") from None
    run_demo(model, dsn, tiny, quiet, Path(folder) if folder else None, server_url)


@cli.command()
@dsn_option("Also check this PostgreSQL (pgvector, plpython3u, schema vecplug, its model)", optional=True)
@server_options(url_help="Also check this `vecplug serve`: health and the model it serves.")
@device_option("Report for this device (cpu, cuda, cuda:N) instead of the automatic choice.")
@dtype_option("Report for this dtype instead of the automatic choice.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
def doctor(dsn, server_url, api_key_file, device, dtype, as_json):
    """What vecplug will use here and why (torch, CUDA, attention, dtype, threads, matmul rate, plugins, models),
    and with --dsn / --server-url whether PostgreSQL and the server answer and agree on the model.

    Exits 1 when a check fails.
    """
    from .cli_checks import check_device
    from .doctor import format_checks, run_checks
    from .settings import Settings

    check_device(device)
    api_key = Settings(api_key_file=api_key_file).api_key_value()
    checks = run_checks(dsn, server_url, api_key, device, dtype)
    if as_json:
        for check in checks:
            click.echo(json.dumps(check.to_dict()))
    else:
        click.echo(format_checks(checks))
    if any(check.status == "fail" for check in checks):
        sys.exit(1)


@cli.command()
@model_option(f"Model name or alias (default: ${MODEL_ENV} or {DEFAULT_MODEL}).")
def pull(model):
    """Download a model into the Hugging Face cache now (needs network), so later commands work offline.

    The model is loaded once on the CPU after the download, which checks its files.
    A model already here, or a local directory, is left as it is.
    """
    from .environment import env_flag
    from .registry import load_model, resolve
    from .settings import Settings

    name = Settings(model=model).model_name()
    registration = resolve(name)  # an unknown name: exit 2 with "did you mean"
    if registration.plugin == "directory":
        click.echo(f"{name} is a local model directory: nothing to download")
        return
    where = _located(registration)
    if where:
        click.echo(f"{registration.spec.name} is already on this machine: {where}")
        return
    if env_flag("HF_HUB_OFFLINE"):
        raise click.UsageError(f"HF_HUB_OFFLINE is set, and vecplug pull downloads: run it as "
                               f"HF_HUB_OFFLINE=0 vecplug pull -m {registration.spec.name}")
    click.echo(f"downloading {registration.spec.name} ...", err=True)
    load_model(registration.spec.name, device="cpu")
    click.echo(f"{registration.spec.name} is on this machine: {_located(registration) or 'in the cache'}")


def _located(registration) -> str | None:
    """Where a registered model's files are here, or None (its plugin may not say: then None too)."""
    try:
        return registration.loader.locate(registration.spec)
    except NotImplementedError:
        return None


@cli.command()
def plugins():
    """List loaded plugins and the hooks they implement."""
    from .plugins import get_plugins

    click.echo(json.dumps(get_plugins(), indent=2))


from .server.cli import serve as _serve  # noqa: E402  (click only; the server loads when it runs)

cli.add_command(_serve)

from .tune.cli import tune as _tune  # noqa: E402  (click only; sentence-transformers loads when it runs)

cli.add_command(_tune)

from .cli_stores import STORE_COMMANDS as _STORE_COMMANDS  # noqa: E402  (search, recommend, cluster, dedup)

for _command in _STORE_COMMANDS:
    cli.add_command(_command)


def _register_plugin_commands():
    load_plugins()
    pm.hook.vecplug_register_commands(cli=cli)


_register_plugin_commands()


def main(args: list[str] | None = None):
    """Entry point: every failure is one line on stderr and an exit status, never a traceback.

    2 for usage mistakes (a bad option value, an unknown model, a malformed
    DSN), 1 for failures while running (a database or server that does not
    answer, a model that failed), 130 for Ctrl-C: ``vecplug.cli_errors``.
    """
    from .cli_errors import run_command

    run_command(cli, args)
