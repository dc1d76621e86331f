"""Hook implementations of the qdrant adapter (import-light).

Loaded at ``vecplug --help`` time through the "vecplug" entry point, so it
imports nothing heavy. The adapter is mostly a library
(``vecplug_qdrant.QdrantEmbedder``) that calls ``vecplug_before_ingest``;
its hooks fill the demo's store and open a collection for the store commands.
"""

from vecplug import hookimpl


@hookimpl
def vecplug_demo_store(folder, dsn, model):
    """``vecplug demo`` fills a Qdrant local-mode collection in its folder (qdrant_client imported only then)."""
    from .demo import QdrantDemoStore

    return QdrantDemoStore(folder, model)


@hookimpl
def vecplug_open_store(selection):
    """``--qdrant PATH_OR_URL --collection C``: the collection as a ``VectorStore`` (qdrant_client imported then)."""
    if not selection.qdrant:
        return None
    from .store import QdrantStore

    return QdrantStore.open(selection.qdrant, selection.collection, selection.text_column)
