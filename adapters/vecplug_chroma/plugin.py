"""Hook implementations of the chroma adapter (import-light).

The adapter's work happens in ``ModernBertEmbeddingFunction`` and the
``add``/``upsert`` helpers, which call ``vecplug_before_ingest``
themselves; the hooks fill the demo's store and open a collection for the
store commands. ``vecplug --help`` loads this module, and with it the package
``__init__``; neither imports chromadb or torch.
"""

from vecplug import hookimpl


@hookimpl
def vecplug_demo_store(folder, dsn, model):
    """``vecplug demo`` fills a persistent Chroma collection in its folder (chromadb imported only then)."""
    from .demo import ChromaDemoStore

    return ChromaDemoStore(folder, model)


@hookimpl
def vecplug_open_store(selection):
    """``--chroma PATH_OR_URL --collection C``: the collection as a ``VectorStore`` (chromadb imported then)."""
    if not selection.chroma:
        return None
    from .store import ChromaStore

    return ChromaStore.open(selection.chroma, selection.collection)
