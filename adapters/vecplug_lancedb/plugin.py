"""The vecplug_lancedb plugin's entry-point module (import-light).

Importing it, as ``vecplug.load_plugins()`` does, imports the package,
which registers the ``"vecplug"`` embedding function with LanceDB now if
lancedb is imported, else the moment it is. Its one hook opens a table for
the store commands. Neither this module nor the package imports lancedb or
pyarrow, so ``vecplug --help`` and other users of vecplug do not pay for
them.
"""

from vecplug import hookimpl


@hookimpl
def vecplug_open_store(selection):
    """``--lancedb PATH_OR_URI --table T``: the table as a ``VectorStore`` (lancedb imported then)."""
    if not selection.lancedb:
        return None
    from .store import LanceDBStore

    return LanceDBStore.open(selection.lancedb, selection.table, vector_column=selection.column,
                             text_column=selection.text_column, id_column=selection.id_column)
