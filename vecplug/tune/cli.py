"""``vecplug tune``: the command. Click only here; the run imports sentence-transformers when it starts."""
from __future__ import annotations

import json

import click

from ..cli_options import device_option, dsn_option, model_option

# what a run imports beyond vecplug's own dependencies, all brought by the `tune` extra
TRAINING_MODULES = ("sentence_transformers", "datasets", "accelerate")


@click.command()
@click.option("--pairs", "pairs_path", type=click.Path(dir_okay=False, allow_dash=False), default=None,
              help='JSON lines: {"query": ..., "positive": ...} with an optional "negative" (at least 16).')
@dsn_option("With --sql: the database to read the pairs from")
@click.option("--sql", default=None, help='With --dsn: a query returning query, positive[, negative], e.g. '
                                          '"SELECT question, answer FROM faq" (read with a server-side cursor).')
@model_option(help="The base model: name, alias or directory (a ModernBERT in the sentence-transformers layout).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Write the tuned model here (a new or empty folder), only if it beats the base.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Passes over the pairs (default: enough for ~400 steps, at most 10; shown before training).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Pairs per step; each query's other positives are its negatives, so bigger is better "
                   "(default: 16 to 128 by the number of pairs).")
@click.option("--learning-rate", type=float, default=None,
              help="Default: 2e-5 for a 768-wide model, more for narrower ones (8e-4 at 64 wide). If the tuned "
                   "model does not win, try 2-5x higher for a short run, or lower if it got worse.")
@click.option("--matryoshka", default=None,
              help="Sizes to train vectors to be cut to, e.g. 768,512,256 (default: the model's own).")
@click.option("--hard-negatives", type=click.IntRange(min=0), default=0, show_default=True,
              help="Mine K negatives per query with the base model (near-duplicates of the positive skipped).")
@click.option("--eval-fraction", type=click.FloatRange(0, 0.5, min_open=True), default=0.1, show_default=True,
              help="Share of the queries held out to measure base and tuned models.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the held-out split and training.")
@click.option("--force", is_flag=True, help="Write the tuned model even if it does not beat the base.")
@device_option()
@click.option("--json", "as_json", is_flag=True, help='End with one line {"base": ..., "tuned": ..., "path": ...}.')
@click.option("-q", "--quiet", is_flag=True, help="No plan, estimate or progress bar on stderr.")
def tune(pairs_path, dsn, sql, model, out, epochs, batch_size, learning_rate, matryoshka, hard_negatives,
         eval_fraction, seed, force, device, as_json, quiet):
    """Fine-tune an embedding model on your (query, positive) pairs; write it only if it retrieves better.

    A seeded share of the queries is held out. The base model's recall@10 and
    nDCG@10 on them (each searched among all distinct positives) is measured,
    the model is trained (sentence-transformers, CachedMultipleNegativesRanking
    loss inside MatryoshkaLoss, the model's own prompts), then measured again.
    DIR is written only when the tuned recall@10 beats the base's (exit 1
    otherwise, nothing written; --force writes anyway). Runs on a GPU when
    there is one, on the CPU otherwise (slowly: the estimate is shown first).

    Next: `vecplug serve -m DIR`, then re-embed stored vectors
    (`vecplug pg reembed`, or a new Chroma/Qdrant collection): see docs/tune.md.
    """
    from ..cli_checks import check_device
    from ..cli_errors import Failure, missing_module_line
    from ..errors import InvalidSettingError
    from .options import TuneOptions, parse_sizes
    from .pairs import pairs_from_jsonl, pairs_from_sql
    from .run import run_tune

    if (pairs_path is None) == (sql is None):
        raise click.UsageError("give --pairs FILE.jsonl, or --dsn DSN --sql QUERY (one source)")
    check_device(device)
    for module in TRAINING_MODULES:
        if not _importable(module):
            raise Failure(missing_module_line(module, extra="tune").removeprefix("Error: "))
    options = TuneOptions(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                          matryoshka=parse_sizes(matryoshka) if matryoshka else None, hard_negatives=hard_negatives,
                          eval_fraction=eval_fraction, seed=seed, force=force, device=device)
    options.check()
    if pairs_path is not None:
        try:
            pairs = pairs_from_jsonl(pairs_path)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
            raise InvalidSettingError(f"--pairs {pairs_path}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise InvalidSettingError(f"--pairs {pairs_path} is not UTF-8 text ({error.reason})") from None
    else:
        pairs = pairs_from_sql(dsn, sql)
    result = run_tune(pairs, model, out, options, quiet)
    click.echo(format_table(result.base, result.tuned), err=as_json)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    if result.path is None:
        raise Failure(f"the tuned model did not beat the base on held-out queries (recall@10 "
                      f"{result.tuned['recall@10']:.3f} tuned vs {result.base['recall@10']:.3f} base): nothing "
                      "written. Try more pairs, --epochs or another --learning-rate, or --force to keep it")
    if not as_json:
        click.echo(f"wrote {result.path}; next: vecplug serve -m {result.path} (and re-embed stored vectors)")


def format_table(base: dict, tuned: dict) -> str:
    """The base vs tuned table (held-out queries, searched among all positives)."""
    lines = [f"{'':10}{'base':>8}{'tuned':>8}{'change':>9}"]
    for metric in ("recall@10", "ndcg@10"):
        change = tuned[metric] - base[metric]
        lines.append(f"{metric:10}{base[metric]:8.3f}{tuned[metric]:8.3f}{change:+9.3f}")
    lines.append(f"({base['queries']} held-out queries, {base['corpus']} positives searched)")
    return "\n".join(lines)


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook that refuses it, a broken install: not usable either way
        return False
