"""``ChromaStore``: a Chroma collection as a ``vecplug.stores.VectorStore``, and ``recommend`` for Chroma.

Opened by ``vecplug_open_store`` for ``--chroma PATH_OR_URL --collection C``
(a folder: ``PersistentClient``, which must exist, or it would create an
empty store; an http(s) URL: ``HttpClient``). Works on the stored
embeddings through Chroma's own calls: ``query`` with ``query_embeddings``
(its HNSW index), ``get`` (by ids; pages of ``limit``/``offset`` for the
items) and ``update`` of metadata only (labels; nothing is re-embedded).

Chroma has no recommend API: ``recommend`` uses vecplug's strategy for such
stores (``vecplug.analysis.recommending``, Qdrant's average vector), and has
no way to exclude ids in a query, so it asks for that many more and drops them.
Distances become cosine similarities by the collection's space: cosine and
ip ``1 - d``, l2 (squared, unit vectors) ``1 - d / 2``.
"""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

from vecplug.analysis.clustering import check_label_field
from vecplug.analysis.recommending import recommend_by_average
from vecplug.stores import Hit, StoredItem, StoreNotFoundError, UnknownIdsError

from .checks import stored_config
from .chunks import CHUNK_FIELDS

LABEL_BATCH = 1000


def open_client(location: str):
    import chromadb

    if location.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(location)
        return chromadb.HttpClient(host=parts.hostname, port=parts.port or (443 if parts.scheme == "https" else 8000),
                                   ssl=parts.scheme == "https")
    if not Path(location).is_dir():
        raise StoreNotFoundError(f"there is no Chroma store in {location!r} (--chroma): not a folder")
    return chromadb.PersistentClient(location)


def parse_where(where: str | None) -> dict | None:
    """Chroma's ``where`` filter from its JSON form (``{"topic": "space"}``, ``{"$and": [...]}``)."""
    if where is None:
        return None
    try:
        parsed = json.loads(where)
    except ValueError as error:
        parsed = error
    if not isinstance(parsed, dict):
        from vecplug import InvalidSettingError

        raise InvalidSettingError(f"--where is not a Chroma where filter in JSON: {where!r}; "
                                  'e.g. {"topic": "space"} or {"year": {"$gte": 2020}}')
    return parsed


class ChromaStore:
    """One Chroma collection, read through its stored embeddings."""

    def __init__(self, collection, description: str | None = None):
        self.collection = collection
        self.description = f"Chroma collection {collection.name!r}" + (f" in {description}" if description else "")
        hnsw = (collection.configuration_json or {}).get("hnsw") or {}
        spann = (collection.configuration_json or {}).get("spann") or {}
        self.space = hnsw.get("space") or spann.get("space") or "l2"

    @classmethod
    def open(cls, location: str, name: str) -> "ChromaStore":
        from chromadb.errors import NotFoundError

        client = open_client(location)
        try:
            collection = client.get_collection(name)
        except NotFoundError:
            raise StoreNotFoundError(f"there is no Chroma collection {name!r} in {location} (--collection)") from None
        return cls(collection, location)

    def recorded_model(self) -> dict | None:
        config = stored_config(self.collection)
        if not config:
            return None
        return {"name": config["model"], **config}

    def count(self) -> int:
        return self.collection.count()

    def _score(self, distance: float) -> float:
        return 1.0 - distance / 2.0 if self.space == "l2" else 1.0 - distance

    def nearest(self, vector, k: int, *, where: str | None = None, exclude=()) -> list[Hit]:
        excluded = {str(item) for item in exclude}
        found = self.collection.query(query_embeddings=[[float(value) for value in vector]],
                                      n_results=k + len(excluded), where=parse_where(where),
                                      include=["documents", "distances"])
        hits = [Hit(item_id, self._score(distance), document)
                for item_id, distance, document in zip(found["ids"][0], found["distances"][0], found["documents"][0])
                if item_id not in excluded]
        return hits[:k]

    def vectors(self, ids) -> dict:
        import numpy as np

        asked = [str(item) for item in ids]
        found = self.collection.get(ids=asked, include=["embeddings"])
        missing = sorted(set(asked) - set(found["ids"]))
        if missing:
            raise UnknownIdsError(f"no record with id {', '.join(missing)} in {self.description}")
        return {item_id: np.asarray(vector, dtype=np.float32) for item_id, vector in zip(found["ids"],
                                                                                          found["embeddings"])}

    def recommend(self, positive, negative, k: int) -> list[Hit]:
        return recommend_by_average(self, [str(item) for item in positive], [str(item) for item in negative or ()], k)

    def items(self, batch_size: int = 1000):
        import numpy as np

        offset = 0
        while True:
            page = self.collection.get(limit=batch_size, offset=offset, include=["embeddings", "documents"])
            if not page["ids"]:
                return
            vectors = np.asarray(page["embeddings"], dtype=np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            yield [StoredItem(item_id, vector, document)
                   for item_id, vector, document in zip(page["ids"], vectors, page["documents"])]
            offset += len(page["ids"])

    def write_labels(self, field: str, labels) -> int:
        """Each label into metadata key ``field`` (Chroma merges it into the record's metadata), 1,000 at a time."""
        check_label_field(field, CHUNK_FIELDS)
        written, pending = 0, []
        for pair in labels:
            pending.append(pair)
            if len(pending) == LABEL_BATCH:
                written += self._update(field, pending)
                pending = []
        return written + self._update(field, pending)

    def _update(self, field: str, pairs: list) -> int:
        if pairs:
            self.collection.update(ids=[str(item_id) for item_id, _ in pairs],
                                   metadatas=[{field: int(label)} for _, label in pairs])
        return len(pairs)

    def close(self) -> None:
        pass


def recommend(collection, positive, negative=(), n_results: int = 10) -> list[Hit]:
    """Records like ``positive`` and unlike ``negative`` (ids) from their stored embeddings, best first.

    Returns ``vecplug.stores.Hit`` (``id``, ``score``: cosine similarity to
    the recommendation vector, ``text``: the document), never one of the
    given ids; an id not in the collection raises ``UnknownIdsError``.
    """
    if isinstance(positive, str) or isinstance(negative, str):
        raise TypeError("positive and negative are lists of ids")
    return ChromaStore(collection).recommend(positive, negative, n_results)
