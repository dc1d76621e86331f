"""Guards against mixing two models' vectors in one collection, where Chroma has none.

Chroma compares only function *names* when a collection is opened with a
function, and ``Collection.modify`` stores a new embedding function config
on the server *before* it asks the function whether the change is allowed
(chromadb 1.5), so a refused model change is persisted anyway. These
checks run before anything is sent. Import-light: the collection passed in
means chromadb is already loaded.
"""
from __future__ import annotations


def stored_config(collection) -> dict | None:
    """The persisted vecplug function config of ``collection``, or None if it has another function."""
    from .embedding_function import NAME

    persisted = (collection.configuration_json or {}).get("embedding_function") or {}
    if persisted.get("name") != NAME:
        return None
    return persisted.get("config") or {}


def check_collection(collection) -> None:
    """Raise ModelMismatchError if the function ``collection`` embeds with is not its model.

    Catches ``client.get_collection(name, embedding_function=<another model>)``:
    Chroma would embed new documents and queries with the function passed in.
    The write helpers call this; call it yourself before querying a
    collection opened with an explicit function.
    """
    from .embedding_function import ModernBertEmbeddingFunction, check_same_space

    function = getattr(collection, "_embedding_function", None)  # Chroma keeps no public handle on it
    stored = stored_config(collection)
    if isinstance(function, ModernBertEmbeddingFunction) and stored is not None:
        check_same_space(stored, function.get_config(), action="use it with", collection_name=collection.name)


def update_embedding_function(collection, function) -> None:
    """Store ``function``'s config in ``collection`` (the same model under a new name: it moved), checked first.

    Use this instead of ``collection.modify(configuration={"embedding_function": ...})``:
    that raises the same ModelMismatchError, but only after the server has
    stored the new model's config. Device, dtype and batch size are not
    stored (each process chooses its own), so changing only those changes nothing.
    """
    from .embedding_function import ModernBertEmbeddingFunction, check_same_space

    if not isinstance(function, ModernBertEmbeddingFunction):
        raise TypeError(f"function must be a ModernBertEmbeddingFunction, got {type(function).__name__}")
    stored = stored_config(collection)
    if stored is None:
        raise ValueError(
            f"collection {collection.name!r} was not created with a vecplug function; "
            "Chroma cannot switch it to one"
        )
    check_same_space(stored, function.get_config(), action="switch this collection to", collection_name=collection.name)
    collection.modify(configuration={"embedding_function": function})
