"""What ``vecplug cluster``, ``dedup`` and ``recommend`` compute, for any store.

The algorithms know no database: they take vectors (``cluster``) or a
``vecplug.stores.VectorStore`` (``cluster_store``, ``duplicate_pairs``,
``recommend_by_average``) and work through its Protocol, streaming its items
in batches. scikit-learn (the ``cluster`` extra) is imported only when a
clustering runs.
"""
from .clustering import cluster, cluster_store, default_k
from .ids import id_order_key
from .pairs import duplicate_pairs
from .recommending import recommend_by_average, recommendation_vector
from .topics import TopicTerms

__all__ = ["TopicTerms", "cluster", "cluster_store", "default_k", "duplicate_pairs", "id_order_key",
           "recommend_by_average", "recommendation_vector"]
