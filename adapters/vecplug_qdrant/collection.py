"""What a collection records about its model, and the checks that keep two models apart.

A collection created here carries, in Qdrant's collection metadata, the spec
of the model that fills it (name, fingerprint, dimensions, prompts) under
the ``"vecplug"`` key. Vectors of two models are not comparable, and Qdrant
only notices a wrong size, so every write and query compares fingerprints
first; ``from_collection`` reads the spec back to load the same model.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.metadata import version

from vecplug import ModelMismatchError, VecplugError, check_same_space
from vecplug.spaces import load_recorded_model
from vecplug.client import RemoteModel

METADATA_KEY = "vecplug"
METADATA_FORMAT = 1
METADATA_SINCE = (1, 16)  # collection metadata: Qdrant and qdrant-client 1.16


class CollectionNotFoundError(VecplugError, LookupError):
    """The named collection does not exist."""


class CollectionExistsError(VecplugError, ValueError):
    """``create_collection`` on a name that is taken (by a collection of the same model)."""


class UnrecordedCollectionError(VecplugError, LookupError):
    """A collection that vecplug did not create: it does not say which model made its vectors."""


def collection_metadata(model, vector_name: str) -> dict:
    record = {"format": METADATA_FORMAT, "vector_name": vector_name, "model": model.spec.to_dict()}
    if isinstance(model, RemoteModel):
        record["url"] = model.url  # where from_collection finds the model again (never the API key)
    return {METADATA_KEY: record}


def create_arguments(model, vector_name: str, options: dict) -> dict:
    """``create_collection`` arguments: the caller's options plus the model's vector and record.

    Other named vectors (sparse ones, another model's) may be passed in
    ``vectors_config``; the model's own vector and the ``"vecplug"`` metadata
    key are vecplug's to set.
    """
    from qdrant_client import models

    check_client_version(version("qdrant-client"))
    options = dict(options)
    vectors = options.pop("vectors_config", None) or {}
    if not isinstance(vectors, Mapping):
        raise TypeError(
            "vectors_config must be a dict of named vectors to add next to the model's own; "
            "the model's vector is named and sized by the embedder"
        )
    if vector_name in vectors:
        raise ValueError(f"vectors_config names {vector_name!r}, the embedder's own vector; pick another name")
    metadata = dict(options.pop("metadata", None) or {})
    if METADATA_KEY in metadata:
        raise ValueError(f"metadata key {METADATA_KEY!r} is where vecplug records the model; use another key")
    metadata.update(collection_metadata(model, vector_name))
    own = models.VectorParams(size=model.dimensions, distance=models.Distance.COSINE)
    return {"vectors_config": {**vectors, vector_name: own}, "metadata": metadata, **options}


def check_client_version(installed: str) -> None:
    """Older clients reject ``metadata=`` with a bare assertion; say what to upgrade instead."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", installed)[:2])
    if numbers < METADATA_SINCE:
        raise VecplugError(
            f"qdrant-client {installed} cannot store collection metadata, where vecplug records the model; "
            "upgrade: pip install 'qdrant-client>=1.16' (and use a Qdrant server 1.16 or later)"
        )


def recorded(info) -> dict | None:
    """The ``"vecplug"`` record of a collection (from ``get_collection``), or None."""
    record = (getattr(info.config, "metadata", None) or {}).get(METADATA_KEY)  # no metadata before 1.16
    if not isinstance(record, Mapping) or not isinstance(record.get("model"), Mapping):
        return None
    return dict(record)


def check_collection(name: str, info, model, vector_name: str) -> None:
    """Refuse a collection whose recorded model, or vector size, is not this embedder's."""
    record = recorded(info)
    if record is not None and record.get("vector_name") == vector_name:
        check_same_space(
            record["model"], model, where=f"collection {name!r}", action="use it with",
            hint=f"Use from_collection(client, {name!r}) to get the collection's own model, "
                 "or put this model's vectors in another collection.",
        )
    vectors = info.config.params.vectors
    if not isinstance(vectors, Mapping) or vector_name not in vectors:
        found = sorted(vectors) if isinstance(vectors, Mapping) else "one unnamed vector" if vectors else "none"
        raise ModelMismatchError(
            f"collection {name!r} has no vector named {vector_name!r} (its dense vectors: {found}). "
            "Create the collection with embedder.create_collection(name), or pass vector_name= the one to use."
        )
    size = vectors[vector_name].size
    if size != model.dimensions:
        raise ModelMismatchError(
            f"collection {name!r} holds {size}-dimensional {vector_name!r} vectors, but {model.name} makes "
            f"{model.dimensions}-dimensional ones: it was made for another model. Use a new collection, "
            "or the model it was made with."
        )


def not_found(name: str) -> CollectionNotFoundError:
    return CollectionNotFoundError(
        f"there is no collection {name!r}; create it with embedder.create_collection({name!r})"
    )


def exists(name: str) -> CollectionExistsError:
    return CollectionExistsError(
        f"collection {name!r} already exists (and fits this embedder's model): write to it as it is, "
        "pass exist_ok=True, or delete it first"
    )


def model_from_collection(name: str, info, device=None, dtype=None):
    """Load the model a collection records, checking it is still the one that made the vectors."""
    record = recorded(info)
    if record is None:
        raise UnrecordedCollectionError(
            f"collection {name!r} was not created by vecplug: its metadata has no {METADATA_KEY!r} record, "
            "so its model is unknown. Pass the model yourself: QdrantEmbedder(client, model=..., vector_name=...)."
        )
    model = load_recorded_model(record["model"], where=f"collection {name!r}", url=record.get("url"),
                                device=device, dtype=dtype)
    return model, record.get("vector_name") or "modernbert"
