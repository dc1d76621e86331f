"""``vecplug demo``: one corpus into every database an adapter offers, the same questions to each, side by side.

The databases come from the ``vecplug_demo_store`` hook, so the core knows
none of them: Chroma and Qdrant answer with local stores in the demo's
folder, PostgreSQL only when the user names one with ``--dsn``.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from . import corpus

FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # served by plugins/vecplug-minilm
TOP = 3


@dataclasses.dataclass
class ChosenModel:
    model: object
    label: str
    meaningful: bool = True


def choose_model(name: str | None, tiny: bool, say) -> ChosenModel:
    """``--tiny``, ``--model``, else the default ModernBERT, else (offline, not cached) the MiniLM plugin."""
    from .. import registry
    from ..errors import ModelNotAvailableError, UnknownModelError

    if tiny:
        from transformers.utils import logging as transformers_logging

        from ..testing import cached_model

        transformers_logging.disable_progress_bar()  # its "Writing model shards" bar is not ours to show
        model = registry.load_model(str(cached_model("demo-models", "tiny")))
        return ChosenModel(model, "a tiny random-weight ModernBERT (--tiny): the neighbours below are MEANINGLESS, "
                                  "it only shows the mechanics", meaningful=False)
    if name is not None:
        model = registry.load_model(name)
        return ChosenModel(model, f"{model.name} ({model.dimensions} dims)")
    wanted = registry.default_model_name()
    try:
        model = registry.load_model(wanted)
        return ChosenModel(model, f"{model.name} ({model.dimensions} dims)")
    except ModelNotAvailableError:
        pass
    try:
        model = registry.load_model(FALLBACK_MODEL)
    except UnknownModelError:
        raise click.ClickException(
            f"{wanted} cannot be loaded here (not in the Hugging Face cache, no hub access), and the offline "
            "fallback, the vecplug-minilm plugin, is not installed: pip install plugins/vecplug-minilm "
            "(from a vecplug checkout), or run `vecplug demo --tiny` to see the mechanics only") from None
    say(f"{wanted} cannot be loaded here (not in the Hugging Face cache, no hub access); "
        f"using {FALLBACK_MODEL} from the vecplug-minilm plugin instead")
    return ChosenModel(model, f"{model.name} ({model.dimensions} dims, vecplug-minilm plugin: real weights, offline)")


def open_stores(folder: Path, dsn: str | None, model, say) -> list:
    """Every adapter's demo store; one that cannot start (its extra not installed) is skipped with a line."""
    from ..contracts import DemoStore
    from ..plugins import call_implementation, load_plugins, pm

    load_plugins()
    stores = []
    for implementation in pm.hook.vecplug_demo_store.get_hookimpls():
        try:
            store = call_implementation(implementation, folder=folder, dsn=dsn, model=model)
        except ImportError as error:
            say(f"skipping {implementation.plugin_name}: {error} (install vecplug[{implementation.plugin_name}])")
            continue
        except Exception as error:  # a database that cannot be reached: say which, and close the others
            for store in stores:
                store.close()
            raise click.ClickException(f"{implementation.plugin_name}: {' '.join(str(error).split())}") from None
        if store is None:
            continue
        if not isinstance(store, DemoStore):
            for opened in stores:
                opened.close()
            raise click.ClickException(f"{implementation.plugin_name}: its demo store {store!r} lacks what "
                                       "vecplug.contracts.DemoStore asks for (name, uses_dsn, add, search, close)")
        stores.append(store)
    return sorted(stores, key=lambda store: store.name)


def fill(stores: list, quiet: bool) -> None:
    """Each store embeds the corpus itself (documents, document prompt), a few paragraphs per step."""
    from ..progress import progress

    documents = corpus.DOCUMENTS
    step = 4
    with progress(total=len(documents) * len(stores), desc="embedding the demo corpus", unit="doc",
                  quiet=quiet) as bar:
        for store in stores:
            bar.set_description(f"embedding into {store.name.split(' ')[0]}")
            for start in range(0, len(documents), step):
                chunk = documents[start : start + step]
                store.add([document.id for document in chunk], [document.text for document in chunk])
                bar.update(len(chunk))


def ask(stores: list) -> list[dict]:
    """For each question: every store's top hits, and whether each found the expected paragraph first."""
    results = []
    for question, expected in corpus.QUESTIONS:
        hits = {store.name: store.search(question, TOP) for store in stores}
        results.append({"question": question, "expected": expected, "hits": hits,
                        "right": {name: bool(found) and found[0][0] == expected for name, found in hits.items()}})
    return results


def short_name(store_name: str) -> str:
    return store_name.split(" (")[0]


def format_results(results: list[dict], stores: list, width: int = 26) -> str:
    """A block per question: the expected paragraph, then each database's top hits side by side."""
    names = [store.name for store in stores]
    lines = []
    for result in results:
        lines.append(f"Q: {result['question']}")
        lines.append(f"   expected: {corpus.by_id(result['expected']).title}")
        lines.append("   " + "".join(f"{short_name(name):<{width}}" for name in names))
        for rank in range(TOP):
            cells = []
            for name in names:
                found = result["hits"][name]
                if rank < len(found):
                    document_id, score = found[rank]
                    mark = "*" if document_id == result["expected"] else " "
                    cells.append(f"{rank + 1}. {corpus.by_id(document_id).title} {score:.3f}{mark}"[:width - 1])
                else:
                    cells.append("")
            lines.append("   " + "".join(f"{cell:<{width}}" for cell in cells))
        lines.append("")
    return "\n".join(lines)


def run_demo(model_name: str | None, dsn: str | None, tiny: bool, quiet: bool, folder: Path | None) -> int:
    """Run the demo; returns how many (question, database) pairs found the expected paragraph first."""
    import tempfile

    def say(line: str) -> None:
        click.echo(f"vecplug demo: {line}", err=True)

    chosen = choose_model(model_name, tiny, say)
    temporary = None
    if folder is None:
        temporary = tempfile.TemporaryDirectory(prefix="vecplug-demo-")
        folder = Path(temporary.name)
    folder.mkdir(parents=True, exist_ok=True)
    stores = open_stores(folder, dsn, chosen.model, say)
    try:
        if not stores:
            raise click.ClickException("no database adapter is installed: pip install 'vecplug[chroma,qdrant]'")
        if dsn and not any(store.uses_dsn for store in stores):
            raise click.ClickException("--dsn was given, but no installed adapter offers a PostgreSQL demo store "
                                       "(the vecplug_demo_store hook of vecplug_pgvector); nothing was written")
        click.echo(f"model: {chosen.label}")
        click.echo(f"databases: {'; '.join(store.name for store in stores)}")
        click.echo(f"corpus: {len(corpus.DOCUMENTS)} paragraphs; {len(corpus.QUESTIONS)} questions, "
                   f"top {TOP} per database (* = the paragraph that answers it)\n")
        sys.stdout.flush()
        fill(stores, quiet)
        results = ask(stores)
        click.echo(format_results(results, stores))
        right = sum(sum(result["right"].values()) for result in results)
        total = len(results) * len(stores)
        verdict = "" if chosen.meaningful else " (random weights: a match comes from shared words, not meaning)"
        click.echo(f"{right}/{total} answers found the expected paragraph first{verdict}.")
        if temporary is None:
            click.echo(f"The databases stay in {folder}.")
        return right
    finally:
        for store in stores:
            store.close()
        if temporary is not None:
            temporary.cleanup()
