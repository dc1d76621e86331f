"""Hook implementations of the qdrant adapter (import-light).

Loaded at ``vecplug --help`` time through the "vecplug" entry point, so it
imports nothing heavy. The adapter needs no hook yet: it is a library
(``vecplug_qdrant.QdrantEmbedder``) that calls ``vecplug_before_ingest``.
"""
