"""vecplug's LanceDB adapter: the ``"vecplug"`` embedding function in LanceDB's registry.

    import lancedb
    from lancedb.embeddings import get_registry
    from lancedb.pydantic import LanceModel, Vector
    import vecplug_lancedb                                  # registers "vecplug" (or vecplug.load_plugins())

    function = get_registry().get("vecplug").create(name="nomic-ai/modernbert-embed-base")

    class Docs(LanceModel):
        text: str = function.SourceField()
        vector: Vector(function.ndims()) = function.VectorField()

    table = lancedb.connect("db").create_table("docs", schema=Docs)
    table.add([{"text": "..."}])                            # document prompt
    table.search("question").limit(5).to_list()             # query prompt
    vecplug_lancedb.add(table, rows)                        # through vecplug_before_ingest, streamed
    vecplug_lancedb.upsert(table, rows, on="id")            # merge_insert: replaced rows re-embedded
    vecplug_lancedb.recommend(table, positive=[3], negative=[7])  # from the stored vectors

The store commands (``vecplug search/recommend/cluster/dedup --lancedb
PATH --table T``) open a table through ``vecplug_lancedb.store``.

LanceDB has no plugin discovery: a process that reopens a table must have
imported ``vecplug_lancedb`` (or called ``vecplug.load_plugins()``) before
its first search or write. This package is also the parent of the
``vecplug`` entry-point module (``vecplug_lancedb.plugin``), which
``vecplug.load_plugins()`` and ``vecplug --help`` import, so it must not
import lancedb itself: registration happens now if lancedb is already
imported, and otherwise the moment ``import lancedb`` completes.
"""
from __future__ import annotations

import importlib

from vecplug.after_import import after_import

from .ingest import add, upsert

__all__ = ["VecplugEmbeddings", "add", "recommend", "upsert"]


def __getattr__(name: str):
    if name == "VecplugEmbeddings":
        from .embedding_function import VecplugEmbeddings

        return VecplugEmbeddings
    if name == "recommend":
        from .store import recommend

        return recommend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register() -> None:
    importlib.import_module(f"{__name__}.embedding_function")  # registers "vecplug" on import


after_import("lancedb", _register, who=__name__)
