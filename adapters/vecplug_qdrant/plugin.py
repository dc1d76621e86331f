"""Hook implementations of the qdrant adapter (import-light).

Loaded at ``vecplug --help`` time through the "vecplug" entry point, so it
imports nothing heavy. The adapter needs no hook yet: it is a library
(``vecplug_qdrant.QdrantEmbedder``) that calls ``vecplug_before_ingest``.
"""

from vecplug import hookimpl


@hookimpl
def vecplug_demo_store(folder, dsn, model):
    """``vecplug demo`` fills a Qdrant local-mode collection in its folder (qdrant_client imported only then)."""
    from .demo import QdrantDemoStore

    return QdrantDemoStore(folder, model)
