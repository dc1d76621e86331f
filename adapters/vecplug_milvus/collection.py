"""The collection layout, its record of the model, and the checks that keep two models apart.

A collection created here has primary key ``id`` (INT64, or VARCHAR with
``id_type="str"``), ``vector`` (FLOAT_VECTOR sized for the model, COSINE
index), ``document`` (VARCHAR: the text that was embedded) and dynamic
fields (each record's metadata). The model's spec (name, fingerprint,
dimensions, prompts) is recorded as JSON in the collection's *properties*
under ``"vecplug"``: Milvus Lite 3 reads schema and field descriptions
back empty, properties survive. Milvus only notices a wrong vector size,
so every write and the first query compare fingerprints first.
Import-light: pymilvus is imported inside the functions that build schemas.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from vecplug import ModelMismatchError, VecplugError, check_same_space
from vecplug.spaces import load_recorded_model
from vecplug.client import RemoteModel

PROPERTY_KEY = "vecplug"
RECORD_FORMAT = 1
ID_FIELD, VECTOR_FIELD, TEXT_FIELD = "id", "vector", "document"
RESERVED_FIELDS = (ID_FIELD, VECTOR_FIELD, TEXT_FIELD)
DOCUMENT_MAX_LENGTH = 65_535  # Milvus's VARCHAR limit, in characters
STR_ID_MAX_LENGTH = 512
ID_TYPES = ("int", "str")


class CollectionNotFoundError(VecplugError, LookupError):
    """The named collection does not exist."""


class CollectionExistsError(VecplugError, ValueError):
    """``create_collection`` on a name that is taken (by a collection of the same model)."""


class UnrecordedCollectionError(VecplugError, LookupError):
    """A collection that vecplug did not create: it does not say which model made its vectors."""


def model_record(model) -> dict:
    """What a collection records about its model (never an API key)."""
    record = {"format": RECORD_FORMAT, "model": model.spec.to_dict()}
    if isinstance(model, RemoteModel):
        record["url"] = model.url  # where from_collection finds the model again
    return record


def schema_and_index(client, model, id_type: str):
    """The schema and index parameters of a new collection for ``model``."""
    from pymilvus import DataType

    if id_type not in ID_TYPES:
        raise ValueError(f"id_type must be 'int' (INT64 ids) or 'str' (VARCHAR ids), got {id_type!r}")
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    if id_type == "int":
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
    else:
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=STR_ID_MAX_LENGTH)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=model.dimensions)
    schema.add_field(TEXT_FIELD, DataType.VARCHAR, max_length=DOCUMENT_MAX_LENGTH)
    index = client.prepare_index_params()
    index.add_index(VECTOR_FIELD, index_type="AUTOINDEX", metric_type="COSINE")
    return schema, index


def recorded(description: Mapping) -> dict | None:
    """The ``"vecplug"`` record of a described collection, or None."""
    raw = (description.get("properties") or {}).get(PROPERTY_KEY)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, Mapping) or not isinstance(record.get("model"), Mapping):
        return None
    return dict(record)


def fields_of(description: Mapping) -> dict:
    return {field["name"]: field for field in description.get("fields") or []}


def id_type_of(description: Mapping) -> str:
    """"int" or "str": what the collection's primary key takes."""
    from pymilvus import DataType

    field = fields_of(description).get(ID_FIELD)
    return "str" if field is not None and field["type"] == DataType.VARCHAR else "int"


def check_collection(name: str, description: Mapping, model) -> None:
    """Refuse a collection whose recorded model, or layout, is not this embedder's."""
    from pymilvus import DataType

    record = recorded(description)
    if record is not None:
        check_same_space(
            record["model"], model, where=f"collection {name!r}", action="use it with",
            hint=f"Use MilvusEmbedder.from_collection(client, {name!r}) to get the collection's own model, "
                 "or put this model's vectors in another collection.",
        )
    fields = fields_of(description)
    expected = {ID_FIELD: (DataType.INT64, DataType.VARCHAR), VECTOR_FIELD: (DataType.FLOAT_VECTOR,),
                TEXT_FIELD: (DataType.VARCHAR,)}
    wrong = [field for field, types in expected.items() if field not in fields or fields[field]["type"] not in types]
    if wrong or not description.get("enable_dynamic_field"):
        raise ModelMismatchError(
            f"collection {name!r} is not laid out as vecplug_milvus writes: it needs an INT64 or VARCHAR primary "
            f"key 'id', a FLOAT_VECTOR 'vector', a VARCHAR 'document' and dynamic fields"
            f"{' (' + ', '.join(map(repr, wrong)) + ' missing or of another type)' if wrong else ''}. "
            "Create it with embedder.create_collection(name)."
        )
    size = (fields[VECTOR_FIELD].get("params") or {}).get("dim")
    if size is not None and int(size) != model.dimensions:
        raise ModelMismatchError(
            f"collection {name!r} holds {size}-dimensional vectors, but {model.name} makes "
            f"{model.dimensions}-dimensional ones: it was made for another model. Use a new collection, "
            "or the model it was made with."
        )


def describe(client, name: str) -> dict:
    """``describe_collection``, with a plain error for a missing name (Milvus's differs by version)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"the collection name must be a non-empty str, got {name!r}")
    if not client.has_collection(name):
        raise CollectionNotFoundError(
            f"there is no collection {name!r}; create it with embedder.create_collection({name!r})"
        )
    return client.describe_collection(name)


def ensure_loaded(client, name: str) -> None:
    """Load a released collection: Milvus Lite reopens a ``.db`` with every collection released."""
    from pymilvus.client.types import LoadState

    if client.get_load_state(name).get("state") != LoadState.Loaded:
        client.load_collection(name)


def exists(name: str) -> CollectionExistsError:
    return CollectionExistsError(
        f"collection {name!r} already exists (and fits this embedder's model): write to it as it is, "
        "pass exist_ok=True, or drop it first"
    )


def model_from_collection(name: str, description: Mapping, device=None, dtype=None):
    """Load the model a collection records, checking it is still the one that made the vectors."""
    record = recorded(description)
    if record is None:
        raise UnrecordedCollectionError(
            f"collection {name!r} was not created by vecplug: its properties have no {PROPERTY_KEY!r} record, "
            "so its model is unknown. Pass the model yourself: MilvusEmbedder(client, model=...)."
        )
    model = load_recorded_model(record["model"], where=f"collection {name!r}", url=record.get("url"),
                                device=device, dtype=dtype)
    return model
