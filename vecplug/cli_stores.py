"""``vecplug search``, ``recommend``, ``cluster`` and ``dedup``: one set of store options, any store.

The options build a ``vecplug.stores.StoreSelection``; the adapters'
``vecplug_open_store`` hook opens it (the adapter whose option is set), and
the commands work through the ``VectorStore`` Protocol on the stored
vectors. A store that is not named, named twice, not installed or not
there, and ids that are not stored, are one line and exit status 2.

Only click is imported here: ``vecplug --help`` imports this module.
"""
from __future__ import annotations

import contextlib
import json

import click

from .cli_errors import EXIT_USAGE, Failure
from .cli_options import _apply, server_url_option

STORES = ("--dsn DSN --table T, --chroma PATH_OR_URL --collection C, --qdrant PATH_OR_URL --collection C, "
          "--milvus PATH_OR_URI --collection C or --lancedb PATH_OR_URI --table T")
EXTRA_OF_STORE = {"--dsn/--table": "postgres", "--chroma": "chroma", "--qdrant": "qdrant", "--milvus": "milvus",
                  "--lancedb": "lancedb"}
TEXT_WIDTH = 72


def store_options(function):
    """The options that pick the store, shared by every store command."""
    return _apply(
        click.option("--dsn", default=None, help="PostgreSQL: a libpq connection string or URI (with --table; "
                                                 "default: the PG* environment variables, as vecplug pg does)."),
        click.option("--table", default=None, help="PostgreSQL: a vectorized table ([schema.]name); LanceDB: "
                                                   "a table."),
        click.option("--column", default=None, help="The vector column (PostgreSQL: default the vectorizer's, "
                                                    "else embedding; LanceDB: the vecplug function's)."),
        click.option("--text-column", default=None, help="The text column (PostgreSQL: default the vectorizer's "
                                                         "source, else body; LanceDB: the vecplug function's "
                                                         "source) or Qdrant payload key or Milvus field "
                                                         "(document)."),
        click.option("--id-column", default=None, help="The id column (PostgreSQL: default the primary key; "
                                                       "LanceDB: id)."),
        click.option("--chroma", default=None, help="Chroma: a PersistentClient folder or an http(s) URL."),
        click.option("--qdrant", default=None, help="Qdrant: a local-mode folder or an http(s) URL."),
        click.option("--collection", default=None, help="The Chroma, Qdrant or Milvus collection."),
        click.option("--milvus", default=None, help="Milvus: a Milvus Lite .db or a server URI."),
        click.option("--lancedb", default=None, help="LanceDB: a database folder or a LanceDB URI (with --table)."),
    )(function)


def json_option(function):
    return click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")(function)


def quiet_option(function):
    return click.option("-q", "--quiet", is_flag=True,
                        help="No progress bar (there is none when stderr is not a terminal).")(function)


def selection_of(dsn, table, column, text_column, id_column, chroma, qdrant, collection, milvus, lancedb):
    """The ``StoreSelection`` the options name, or a usage error saying what is missing or too much."""
    from .stores import StoreSelection

    picked = [name for name, given in (("--dsn/--table", dsn or (table and not lancedb)), ("--chroma", chroma),
                                       ("--qdrant", qdrant), ("--milvus", milvus), ("--lancedb", lancedb)) if given]
    if not picked:
        raise click.UsageError(f"name a store: {STORES}")
    if len(picked) > 1:
        raise click.UsageError(f"name one store, not {' and '.join(picked)}")
    option = picked[0]
    if option in ("--dsn/--table", "--lancedb"):  # the stores of tables
        if not table:
            raise click.UsageError(f"{option.split('/')[0]} needs --table: the table to work on")
        if option == "--dsn/--table" and dsn is None:
            dsn = ""  # libpq's PG* environment variables, as every `vecplug pg` command reads them
        if collection:
            store = "PostgreSQL" if option == "--dsn/--table" else "LanceDB"
            raise click.UsageError(f"--collection is for --chroma, --qdrant and --milvus; {store} takes --table")
    else:
        if not collection:
            raise click.UsageError(f"{option} needs --collection: the collection to work on")
        tables_only = [name for name, given in (("--column", column), ("--id-column", id_column)) if given]
        if tables_only or (chroma and text_column):
            names = tables_only + (["--text-column"] if chroma and text_column else [])
            also = "; --text-column to --qdrant and --milvus too" if chroma and text_column else ""
            raise click.UsageError(f"{' and '.join(names)} only apply to --dsn/--table and --lancedb{also}")
    return StoreSelection(dsn=dsn, table=table, column=column, text_column=text_column, id_column=id_column,
                          chroma=chroma, qdrant=qdrant, collection=collection, milvus=milvus,
                          lancedb=lancedb), option


@contextlib.contextmanager
def opened_store(options: dict):
    """The store the options name, open for the block; store errors become one line and exit 2."""
    from .plugins import load_plugins, pm
    from .stores import StoreNotFoundError, UnknownIdsError

    selection, option = selection_of(**options)
    load_plugins()
    try:
        store = pm.hook.vecplug_open_store(selection=selection)
        if store is None:
            raise click.UsageError(f"no installed adapter opens {option}: pip install \".[{EXTRA_OF_STORE[option]}]\" "
                                   "in the vecplug checkout")
        try:
            yield store
        finally:
            store.close()
    except (StoreNotFoundError, UnknownIdsError) as error:
        raise Failure(" ".join(str(error).split()), EXIT_USAGE) from None


def query_model(store, model: str | None, server_url: str | None, device: str | None):
    """The model for a query: -m or --server-url, else the one the store recorded; checked against the record."""
    from .registry import load_model
    from .spaces import check_same_space

    record = store.recorded_model()
    source = model or server_url or (record and (record.get("url") or record.get("name")))
    if not source:
        raise click.UsageError(f"{store.description} records no model: name the one its vectors were made with, "
                               "-m MODEL or --server-url URL")
    device = None if str(source).startswith(("http://", "https://")) else device  # a server has its own
    loaded = load_model(source, device=device)
    if record and record.get("dimensions") and loaded.dimensions != record["dimensions"]:
        loaded = load_model(source, device=device, dimensions=record["dimensions"])  # a Matryoshka store
    if record:
        check_same_space(record, loaded, where=store.description, action="search it with")
    return loaded


def one_line(text, width: int = TEXT_WIDTH) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"


def print_hits(hits, as_json: bool) -> None:
    for hit in hits:
        if as_json:
            click.echo(json.dumps(hit.to_dict(), default=str))
        else:
            click.echo(f"{hit.score:7.4f}  {hit.id!s:>12}  {one_line(hit.text)}")


def require_scikit_learn() -> None:
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        raise Failure('vecplug cluster needs vecplug\'s cluster extra (scikit-learn is not installed): '
                      'pip install ".[cluster]" in the vecplug checkout (or ".[all]")')


@click.command()
@click.argument("query")
@store_options
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many items.")
@click.option("--where", default=None, help="The store's own filter: an SQL condition (PostgreSQL, LanceDB), "
                                            "a Chroma where or a Qdrant filter (JSON), a Milvus expression.")
@click.option("-m", "--model", default=None, help="The query's model (default: the one the store recorded).")
@server_url_option("A `vecplug serve` that embeds the query (default: the store's model, here).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N for a local model (default: automatic).")
@json_option
def search(query, k, where, model, server_url, device, as_json, **store):
    """The k stored items nearest QUERY (embedded with the query prompt), best first; score: cosine similarity."""
    with opened_store(store) as opened:
        loaded = query_model(opened, model, server_url, device)
        vector = loaded.embed_queries([query])[0]
        print_hits(opened.nearest(vector, k, where=where), as_json)


@click.command()
@store_options
@click.option("--positive", multiple=True, required=True, help="An id to find more like (repeat for more).")
@click.option("--negative", multiple=True, help="An id to find less like (repeat for more).")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many items.")
@json_option
def recommend(positive, negative, k, as_json, **store):
    """Items like the --positive ids and unlike the --negative ids, from their stored vectors, never those ids."""
    with opened_store(store) as opened:
        print_hits(opened.recommend(list(positive), list(negative), k), as_json)


@click.command()
@store_options
@click.option("-k", "k", type=click.IntRange(min=1), default=None,
              help="Clusters for kmeans (default: sqrt(items / 2), from 2 to 50); hdbscan finds its own.")
@click.option("--method", type=click.Choice(["kmeans", "hdbscan"]), default="kmeans", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="k-means' random seed.")
@click.option("--write", "field", default=None,
              help="Store each item's label in FIELD (a PostgreSQL int column, Chroma metadata, Qdrant payload).")
@json_option
@quiet_option
def cluster(k, method, seed, field, as_json, quiet, **store):
    """Cluster the stored vectors: per cluster its size, top terms (class-based TF-IDF) and three central texts.

    --json: one line per item, {"id", "cluster"} (-1: hdbscan's noise).
    """
    from .analysis.clustering import StoreClustering
    from .progress import progress

    require_scikit_learn()
    with opened_store(store) as opened:
        clustering = StoreClustering(opened, k, method, seed)
        with progress(total=clustering.count * clustering.passes, desc="clustering", unit="item",
                      quiet=quiet) as bar:
            clustering.on_progress = bar.update
            clustering.fit()
            labels = _echoed(clustering.labels(), as_json)
            if field:
                written = opened.write_labels(field, labels)
            else:
                written = sum(1 for _ in labels)
        if field:
            click.echo(f"wrote {written} labels to {field} in {opened.description}", err=True)
        if not as_json:
            _print_clusters(clustering.summaries())


def _echoed(labels, as_json: bool):
    for item_id, label in labels:
        if as_json:
            click.echo(json.dumps({"id": item_id, "cluster": label}, default=str))
        yield item_id, label


def _print_clusters(summaries) -> None:
    for summary in summaries:
        name = "noise" if summary.label < 0 else f"cluster {summary.label}"
        click.echo(f"{name}: {summary.size} items; top terms: {', '.join(summary.terms) or '-'}")
        for text in summary.nearest_texts:
            click.echo(f"    {one_line(text)}")


@click.command()
@store_options
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=0.95, show_default=True,
              help="The least cosine similarity of a pair.")
@json_option
@quiet_option
def dedup(threshold, as_json, quiet, **store):
    """Every pair of stored items at least --threshold alike, once (a < b), through the store's index row by row.

    Exits 0 whether or not pairs are found.
    """
    from .analysis.pairs import duplicate_pairs
    from .progress import progress

    with opened_store(store) as opened:
        count, found = opened.count(), 0
        with progress(total=count, desc="dedup", unit="item", quiet=quiet) as bar:
            for pair in duplicate_pairs(opened, threshold, on_progress=bar.update):
                found += 1
                if as_json:
                    click.echo(json.dumps(pair, default=str))
                else:
                    click.echo(f"{pair['score']:7.4f}  {pair['a']!s:>12}  {pair['b']!s:>12}")
        if not as_json and not found:
            click.echo(f"no pair at or above {threshold} among {count} items in {opened.description}")


STORE_COMMANDS = (search, recommend, cluster, dedup)
