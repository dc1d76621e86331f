"""Hook implementations of the milvus adapter (import-light).

Loaded at ``vecplug --help`` time through the "vecplug" entry point, so it
imports neither pymilvus nor torch. The adapter is a library
(``vecplug_milvus.MilvusEmbedder``) that calls ``vecplug_before_ingest``;
its hooks fill the demo's store and open a collection for the store commands.
"""

from vecplug import hookimpl


@hookimpl
def vecplug_demo_store(folder, dsn, model):
    """``vecplug demo`` fills a Milvus Lite collection in its folder (pymilvus imported only then)."""
    from .demo import MilvusDemoStore

    return MilvusDemoStore(folder, model)


@hookimpl
def vecplug_open_store(selection):
    """``--milvus PATH_OR_URI --collection C``: the collection as a ``VectorStore`` (pymilvus imported then)."""
    if not selection.milvus:
        return None
    from .store import MilvusStore

    return MilvusStore.open(selection.milvus, selection.collection, selection.text_column)
