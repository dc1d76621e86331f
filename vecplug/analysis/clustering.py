"""``vecplug.cluster`` for vectors in memory, and ``cluster_store`` for a store of any size.

k-means (scikit-learn): plain ``KMeans`` holds every vector, which is the
fastest and best up to ``IN_MEMORY_ROWS``; above, ``cluster_store`` never
holds more than a sample: plain ``KMeans`` on a uniform sample of
``IN_MEMORY_ROWS`` items gives the starting centres (and, through a first
``partial_fit`` on the sample, their weights), a second pass refines them
with ``MiniBatchKMeans.partial_fit`` batch by batch, a third labels every item. HDBSCAN has no streaming form: it needs
every vector at once and is refused above ``HDBSCAN_MAX_ROWS``.
``docs/decisions/0095-store-commands-stream.md`` has the measurements.
Vectors are unit length, so Euclidean k-means and HDBSCAN follow cosine.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
import random

from ..errors import InvalidSettingError
from .topics import TopicTerms

METHODS = ("kmeans", "hdbscan")
IN_MEMORY_ROWS = 10_000    # plain KMeans up to here (10,000 x 768 float32: 31 MB); the sample size above
MANY_STARTS_ROWS = 5_000   # KMeans restarts 10 times up to here (a few hundred items need it), 3 times above
HDBSCAN_MAX_ROWS = 50_000  # HDBSCAN holds all vectors and its neighbour graph; beyond this it runs for hours
MAX_DEFAULT_K = 50
NEAREST_TEXTS = 3
TOP_TERMS = 5


def check_label_field(field: str, taken=()) -> str:
    """A field for ``--write``: a non-empty name that is not one the adapter keeps its own data in."""
    if not isinstance(field, str) or not field.strip():
        raise InvalidSettingError(f"--write needs a field name, got {field!r}")
    if field in taken:
        raise InvalidSettingError(f"--write {field}: that field holds the store's own data ({', '.join(taken)}); "
                                  "pick another name")
    return field


def default_k(count: int) -> int:
    """The rule of thumb k = sqrt(n / 2), at least 2 and at most 50 (pass -k for more)."""
    return max(2, min(MAX_DEFAULT_K, round(math.sqrt(count / 2))))


def check_settings(count: int, k: int | None, method: str) -> int | None:
    """The k to use (None for HDBSCAN), or InvalidSettingError naming what does not fit ``count`` items."""
    if method not in METHODS:
        raise InvalidSettingError(f"unknown clustering method {method!r}: use {' or '.join(METHODS)}")
    if method == "hdbscan":
        if k is not None:
            raise InvalidSettingError("hdbscan finds the number of clusters itself: leave out k (-k)")
        if count > HDBSCAN_MAX_ROWS:
            raise InvalidSettingError(
                f"hdbscan needs all {count:,} vectors in memory at once and is refused above "
                f"{HDBSCAN_MAX_ROWS:,}: use kmeans (mini-batch, any size)")
        if count < 2:
            raise InvalidSettingError(f"there are {count} items: clustering needs at least 2")
        return None
    k = default_k(count) if k is None else k
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidSettingError(f"k must be a positive integer, got {k!r}")
    if k > count:
        raise InvalidSettingError(f"k={k} clusters, but there are only {count} items")
    return k


def _kmeans(k: int, seed: int, rows: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, random_state=seed, n_init=10 if rows <= MANY_STARTS_ROWS else 3)


def _hdbscan(count: int):
    from sklearn.cluster import HDBSCAN

    return HDBSCAN(min_cluster_size=max(5, count // 100), copy=True)


def cluster(vectors, k: int | None = None, method: str = "kmeans", seed: int = 0):
    """Cluster labels of ``vectors`` (n, dim), one int per row: 0..k-1, or -1 for HDBSCAN's noise.

    ``k``: None picks ``default_k(n)`` for kmeans; HDBSCAN finds the number itself.
    """
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise InvalidSettingError(f"vectors must be a 2-d array (n, dim), got shape {vectors.shape}")
    k = check_settings(len(vectors), k, method)
    if method == "hdbscan":
        return _hdbscan(len(vectors)).fit_predict(vectors).astype(int)
    if len(vectors) > IN_MEMORY_ROWS:
        from sklearn.cluster import MiniBatchKMeans

        return MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096).fit_predict(vectors)
    return _kmeans(k, seed, len(vectors)).fit_predict(vectors).astype(int)


@dataclasses.dataclass
class ClusterSummary:
    """What ``vecplug cluster`` prints per cluster."""

    label: int
    size: int = 0
    terms: list = dataclasses.field(default_factory=list)
    nearest_texts: list = dataclasses.field(default_factory=list)  # closest to the centre first
    _heap: list = dataclasses.field(default_factory=list, repr=False)

    def offer(self, score: float, order: int, text: str | None) -> None:
        if text is None:
            return
        entry = (score, -order, text)
        if len(self._heap) < NEAREST_TEXTS:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heappushpop(self._heap, entry)

    def finish(self, terms: list) -> "ClusterSummary":
        self.terms = terms
        self.nearest_texts = [text for _, _, text in sorted(self._heap, reverse=True)]
        return self

    def to_dict(self) -> dict:
        return {"cluster": self.label, "size": self.size, "terms": self.terms, "nearest_texts": self.nearest_texts}


class StoreClustering:
    """Clusters a ``VectorStore`` in passes over ``store.items()``: ``fit()``, then ``labels()``, then ``summaries()``.

    ``on_progress(n)`` is called after each batch of every pass (a bar's update).
    """

    def __init__(self, store, k: int | None = None, method: str = "kmeans", seed: int = 0, *,
                 batch_size: int = 1000, in_memory_rows: int = IN_MEMORY_ROWS, on_progress=None):
        self.store, self.method, self.seed, self.batch_size = store, method, seed, batch_size
        self.count = store.count()
        self.k = check_settings(self.count, k, method)
        self.in_memory_rows = in_memory_rows
        self.on_progress = on_progress or (lambda n: None)
        self.passes = 2 if method == "hdbscan" or self.count <= in_memory_rows else 3
        self._model = None
        self._labels_by_id: dict | None = None
        self._centres = None
        self._summaries: dict[int, ClusterSummary] = {}
        self._terms = TopicTerms()

    # -- pass 1 (and 2) -------------------------------------------------------
    def fit(self) -> "StoreClustering":
        import numpy as np

        if self.method == "hdbscan":
            ids, vectors = self._all_vectors()
            labels = _hdbscan(len(vectors)).fit_predict(vectors)
            self._labels_by_id = dict(zip(ids, labels.tolist()))
            self._centres = {label: _unit(vectors[labels == label].mean(axis=0))
                             for label in set(labels.tolist()) if label >= 0}
            return self
        if self.count <= self.in_memory_rows:
            _, vectors = self._all_vectors()
            self._model = _kmeans(self.k, self.seed, len(vectors)).fit(vectors)
        else:
            from sklearn.cluster import MiniBatchKMeans

            sample = self._sample(self.in_memory_rows)
            centres = _kmeans(self.k, self.seed, len(sample)).fit(sample).cluster_centers_  # the best start a sample gives
            self._model = MiniBatchKMeans(n_clusters=self.k, init=centres, n_init=1, random_state=self.seed,
                                          batch_size=self.batch_size)
            self._model.partial_fit(sample)  # counts per centre from the sample: the stream refines, never resets
            for batch in self.store.items(self.batch_size):
                self._model.partial_fit(np.stack([item.vector for item in batch]))
                self.on_progress(len(batch))
        self._centres = {label: _unit(centre) for label, centre in enumerate(self._model.cluster_centers_)}
        return self

    def _all_vectors(self):
        import numpy as np

        ids, rows = [], []
        for batch in self.store.items(self.batch_size):
            ids.extend(item.id for item in batch)
            rows.extend(item.vector for item in batch)
            self.on_progress(len(batch))
        if len(rows) < 2:
            raise InvalidSettingError(f"{self.store.description} holds {len(rows)} vectors: clustering needs 2")
        return ids, np.stack(rows).astype(np.float32)

    def _sample(self, size: int):
        """A uniform sample of ``size`` vectors (reservoir sampling over one pass)."""
        import numpy as np

        chooser, sample, seen = random.Random(self.seed), [], 0
        for batch in self.store.items(self.batch_size):
            for item in batch:
                seen += 1
                if len(sample) < size:
                    sample.append(item.vector)
                else:
                    slot = chooser.randrange(seen)
                    if slot < size:
                        sample[slot] = item.vector
            self.on_progress(len(batch))
        return np.stack(sample).astype(np.float32)

    # -- the last pass -------------------------------------------------------
    def labels(self):
        """Yield ``(id, label)`` for every item, and gather each cluster's size, terms and central texts."""
        import numpy as np

        order = 0
        for batch in self.store.items(self.batch_size):
            vectors = np.stack([item.vector for item in batch]).astype(np.float32)
            if self._labels_by_id is not None:
                labels = [self._labels_by_id.get(item.id, -1) for item in batch]
            else:
                labels = self._model.predict(vectors).tolist()
            for item, vector, label in zip(batch, vectors, labels):
                summary = self._summaries.setdefault(label, ClusterSummary(label))
                summary.size += 1
                self._terms.add(label, item.text)
                centre = self._centres.get(label)
                if centre is not None:
                    summary.offer(float(vector @ centre), order, item.text)
                order += 1
                yield item.id, int(label)
            self.on_progress(len(batch))

    def summaries(self) -> list[ClusterSummary]:
        """Per cluster (after ``labels()`` ran): biggest first, HDBSCAN's noise (-1) last."""
        tops = self._terms.top(TOP_TERMS)
        found = [summary.finish(tops.get(label, [])) for label, summary in self._summaries.items()]
        return sorted(found, key=lambda summary: (summary.label < 0, -summary.size, summary.label))


def cluster_store(store, k: int | None = None, method: str = "kmeans", seed: int = 0, **options) -> StoreClustering:
    """A fitted ``StoreClustering`` of ``store``: iterate ``labels()``, then read ``summaries()``."""
    return StoreClustering(store, k, method, seed, **options).fit()


def _unit(vector):
    import numpy as np

    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm else vector.astype(np.float32)
