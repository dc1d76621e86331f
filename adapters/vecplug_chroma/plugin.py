"""Hook implementations of the chroma adapter (import-light).

None yet: the adapter's work happens in ``ModernBertEmbeddingFunction`` and
the ``add``/``upsert`` helpers, which call ``vecplug_before_ingest``
themselves. ``vecplug --help`` loads this module, and with it the package
``__init__``; neither imports chromadb or torch.
"""
