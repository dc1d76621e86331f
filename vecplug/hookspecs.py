"""Every hook a vecplug plugin can implement, one docstring each.

Plugins mark implementations with ``vecplug.hookimpl``. Argument names matter:
pluggy passes arguments by name, and an implementation may accept any subset.
"""
from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("vecplug")
hookimpl = HookimplMarker("vecplug")


@hookspec
def vecplug_register_models(register):
    """Register embedding models: call ``register(spec, loader)`` once per model.

    ``spec`` is a ``vecplug.ModelSpec``; ``loader(spec, device, dtype)`` returns a
    ``vecplug.EmbeddingModel``. ``vecplug.load_model`` resolves names and aliases
    through what is registered here.
    """


@hookspec(firstresult=True)
def vecplug_model_from_directory(path):
    """Claim a local model directory: return ``(spec, loader)`` or None.

    firstresult: the first plugin that recognises the architecture (ModernBERT
    claims ``config.json`` with ``model_type == "modernbert"``) wins.
    """


@hookspec(firstresult=True)
def vecplug_model_from_hub(name):
    """Claim a hub id no plugin registered (``"Alibaba-NLP/gte-modernbert-base"``): ``(spec, loader)`` or None.

    Asked after registered names, aliases and local directories. ModernBERT
    claims a hub model whose files (in the HF cache, or downloaded unless
    ``HF_HUB_OFFLINE`` is set) say ``model_type == "modernbert"``; None
    leaves the name unknown.
    """


@hookspec(firstresult=True)
def vecplug_embed(texts, kind, model, dimensions):
    """Embed ``texts`` (list of str) as ``kind`` ("document" or "query").

    firstresult: return a float32 ``numpy`` array of shape (len(texts), dim),
    L2-normalised, or None when ``model`` (a name, path or None for the
    default) is not one this plugin serves. ``vecplug.embed`` calls this.
    """


@hookspec
def vecplug_before_ingest(records, target):
    """Change what an adapter is about to embed and store.

    ``records`` is a list of ``vecplug.Record``; ``target`` a ``vecplug.Target``
    naming the database and collection or table. Return a new list (records
    changed, added or dropped) or None to leave it. Plugins run in turn, each
    seeing the previous one's output; what comes out is what is stored.
    """


@hookspec
def vecplug_register_commands(cli):
    """Add click commands or groups to the ``vecplug`` CLI (e.g. ``vecplug pg``)."""


@hookspec
def vecplug_engine_report(device, dtype):
    """Describe the engine this plugin runs models on, here: return a dict or None.

    ``device`` and ``dtype`` are what the user would ask for (None: auto). The
    dict names the engine (``"engine"``) and what it would use and why
    (device, dtype, back-ends, threads ...); ``vecplug doctor`` prints it.
    A loaded model's ``EmbeddingModel.describe()`` gives the same keys for what it uses.
    """


@hookspec
def vecplug_demo_store(folder, dsn, model):
    """A database for ``vecplug demo`` to fill and query, or None.

    ``folder`` (a ``pathlib.Path``) is the demo's own folder for local stores;
    ``dsn`` is the PostgreSQL connection string the user gave, or None (a
    plugin never writes into a database nobody named); ``model`` is the
    loaded ``vecplug.EmbeddingModel``. The store honours
    ``vecplug.contracts.DemoStore``: ``name``, ``uses_dsn`` (True when it
    writes into ``dsn``), ``add(ids, texts)``, ``search(question, limit)``
    returning ``[(id, cosine similarity), ...]`` best first, and ``close()``.
    """


@hookspec
def vecplug_doctor_checks(dsn, server_url, api_key):
    """Checks for ``vecplug doctor --dsn DSN [--server-url URL]``: return a list of dicts or None.

    ``api_key`` is the server's key (``--api-key-file`` or ``$VECPLUG_API_KEY``), or None.

    Each dict has ``section`` (e.g. "PostgreSQL"), ``name``, ``status`` ("ok",
    "info", "warn" or "fail") and ``detail`` (what was found, and what to do
    when it is wrong). A plugin checks only what it owns (the pgvector adapter:
    reachable, pgvector, plpython3u, schema vecplug, the model it records
    against the server's) and returns None when ``dsn`` is not its concern.
    """


@hookspec(firstresult=True)
def vecplug_open_store(selection):
    """Open the store ``selection`` names, or return None when it is not this plugin's.

    ``selection`` is a ``vecplug.stores.StoreSelection`` built from the store
    options every store command shares (``--dsn/--table``, ``--chroma``,
    ``--qdrant`` with ``--collection``). Return a ``vecplug.stores.VectorStore``
    when the option this plugin owns is set (the pgvector adapter: ``dsn``
    and ``table``); raise ``vecplug.stores.StoreNotFoundError`` naming the
    table or collection when it does not exist.
    """
