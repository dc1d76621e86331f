"""Hook implementations of the chroma adapter (import-light).

None yet: the adapter's work happens in ``ModernBertEmbeddingFunction`` and
the ``add``/``upsert`` helpers, which call ``vecplug_before_ingest``
themselves. ``vecplug --help`` loads this module, and with it the package
``__init__``; neither imports chromadb or torch.
"""

from vecplug import hookimpl


@hookimpl
def vecplug_demo_store(folder, dsn, model):
    """``vecplug demo`` fills a persistent Chroma collection in its folder (chromadb imported only then)."""
    from .demo import ChromaDemoStore

    return ChromaDemoStore(folder, model)
