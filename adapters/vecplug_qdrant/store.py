"""``QdrantStore``: a Qdrant collection as a ``vecplug.stores.VectorStore`` for search, recommend, cluster, dedup.

Opened by ``vecplug_open_store`` for ``--qdrant PATH_OR_URL --collection C``:
a folder is local mode (it must exist: local mode would create an empty
store), an http(s) URL a server. Works on the stored vectors only, through
Qdrant's own calls: ``query_points`` (nearest, and ``recommend`` with
Qdrant's recommend API), ``retrieve``, ``scroll`` (items, in id order),
``set_payload`` (labels). Scores are Qdrant's cosine scores.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from vecplug.analysis.clustering import check_label_field
from vecplug.stores import Hit, StoredItem, StoreNotFoundError

from .base import DEFAULT_TEXT_FIELD, DEFAULT_VECTOR_NAME
from .collection import recorded
from .recommend import coerce_id, examples, missing_ids, query_arguments


def open_client(location: str):
    from qdrant_client import QdrantClient

    if location.startswith(("http://", "https://")):
        return QdrantClient(url=location)
    if not Path(location).is_dir():
        raise StoreNotFoundError(f"there is no Qdrant store in {location!r} (--qdrant): not a folder")
    return QdrantClient(path=location)


def parse_filter(where: str | None):
    """A Qdrant filter from its JSON form (``{"must": [{"key": ..., "match": {"value": ...}}]}``)."""
    from qdrant_client import models

    if where is None:
        return None
    try:
        return models.Filter.model_validate(json.loads(where))
    except ValueError as error:  # json.JSONDecodeError and pydantic's ValidationError both are ValueErrors
        from vecplug import InvalidSettingError

        raise InvalidSettingError(f"--where is not a Qdrant filter in JSON ({' '.join(str(error).split())[:300]}); "
                                  'e.g. {"must": [{"key": "topic", "match": {"value": "space"}}]}') from None


class QdrantStore:
    """One collection of a Qdrant client (closed with the store when the store opened it)."""

    def __init__(self, client, collection: str, *, text_field: str | None = None, owns_client: bool = False,
                 description: str | None = None):
        self.client, self.name, self._owns_client = client, collection, owns_client
        if not client.collection_exists(collection):
            self.close()
            raise StoreNotFoundError(f"there is no Qdrant collection {collection!r}"
                                     f"{' in ' + description if description else ''} (--collection)")
        self._record = recorded(client.get_collection(collection))
        self.vector_name = (self._record or {}).get("vector_name") or DEFAULT_VECTOR_NAME
        self.text_field = text_field or DEFAULT_TEXT_FIELD
        self.description = f"Qdrant collection {collection!r}" + (f" in {description}" if description else "")

    @classmethod
    def open(cls, location: str, collection: str, text_field: str | None = None) -> "QdrantStore":
        return cls(open_client(location), collection, text_field=text_field, owns_client=True, description=location)

    def recorded_model(self) -> dict | None:
        if self._record is None:
            return None
        return {**self._record["model"], **({"url": self._record["url"]} if self._record.get("url") else {})}

    def count(self) -> int:
        return self.client.count(self.name, exact=True).count

    def _hit(self, point) -> Hit:
        text = (point.payload or {}).get(self.text_field)
        return Hit(point.id, float(point.score), text if isinstance(text, str) else None)

    def _exclusion(self, where: str | None, exclude) -> object:
        from qdrant_client import models

        query_filter = parse_filter(where)
        if exclude:
            query_filter = query_filter or models.Filter()
            not_these = models.HasIdCondition(has_id=[coerce_id(item) for item in exclude])
            query_filter.must_not = [*(query_filter.must_not or []), not_these]
        return query_filter

    def nearest(self, vector, k: int, *, where: str | None = None, exclude=()) -> list[Hit]:
        points = self.client.query_points(
            self.name, query=[float(value) for value in vector], using=self.vector_name, limit=k,
            query_filter=self._exclusion(where, exclude), with_payload=[self.text_field]).points
        return [self._hit(point) for point in points]

    def vectors(self, ids) -> dict:
        import numpy as np

        asked = [coerce_id(item) for item in ids]
        points = self.client.retrieve(self.name, asked, with_vectors=[self.vector_name], with_payload=False)
        missing_ids(asked, points)
        return {point.id: np.asarray(point.vector[self.vector_name], dtype=np.float32) for point in points}

    def recommend(self, positive, negative, k: int) -> list[Hit]:
        positive, negative = examples(positive, negative)
        self.vectors([*positive, *negative])  # UnknownIdsError names every missing id
        arguments = query_arguments(positive, negative, self.vector_name, k, with_payload=[self.text_field])
        return [self._hit(point) for point in self.client.query_points(self.name, **arguments).points]

    def items(self, batch_size: int = 1000):
        import numpy as np

        offset = None
        while True:
            points, offset = self.client.scroll(self.name, limit=batch_size, offset=offset,
                                                with_vectors=[self.vector_name], with_payload=[self.text_field])
            batch = []
            for point in points:
                vector = (point.vector or {}).get(self.vector_name)
                if vector is None:
                    continue
                vector = np.asarray(vector, dtype=np.float32)
                text = (point.payload or {}).get(self.text_field)
                batch.append(StoredItem(point.id, vector / (np.linalg.norm(vector) or 1.0),
                                        text if isinstance(text, str) else None))
            if batch:
                yield batch
            if offset is None:
                return

    def write_labels(self, field: str, labels) -> int:
        """Each label into the payload key ``field``, one ``set_payload`` per label and batch of 1,000 points."""
        check_label_field(field, (self.text_field, "source_id", "chunk_index", "chunk_start", "chunk_end"))
        written, pending = 0, []
        for pair in labels:
            pending.append(pair)
            if len(pending) == 1000:
                written += self._set_labels(field, pending)
                pending = []
        return written + self._set_labels(field, pending)

    def _set_labels(self, field: str, pairs: list) -> int:
        by_label = defaultdict(list)
        for item_id, label in pairs:
            by_label[int(label)].append(item_id)
        for label, ids in by_label.items():
            self.client.set_payload(self.name, payload={field: label}, points=ids, wait=True)
        return len(pairs)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

