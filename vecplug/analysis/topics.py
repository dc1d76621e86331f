"""Top terms per cluster by class-based TF-IDF, as BERTopic computes them.

Each cluster's texts are one document; a term's weight in cluster c is
``tf(t, c) * log(1 + A / f(t))``: its frequency in the cluster, times how
rare it is over all clusters (``f(t)`` its count in every cluster together,
``A`` the average number of words per cluster). Words are counted as they
stream past (lower-cased letters and digits, English stop words and
one-letter words left out), so memory grows with the vocabulary, not with
the number of texts.
"""
from __future__ import annotations

import math
import re
from collections import Counter

WORD = re.compile(r"[^\W_][\w'-]*[^\W_]", re.UNICODE)


def _stop_words() -> frozenset:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


class TopicTerms:
    """Counts words per cluster (``add``) and names each cluster's top terms (``top``)."""

    def __init__(self):
        self.counts: dict[int, Counter] = {}
        self._stop = _stop_words()

    def add(self, cluster: int, text: str | None) -> None:
        if not text:
            return
        words = (word for word in WORD.findall(text.lower()) if word not in self._stop and not word.isdigit())
        self.counts.setdefault(cluster, Counter()).update(words)

    def top(self, n: int = 5) -> dict[int, list[str]]:
        """The ``n`` heaviest terms of each cluster, heaviest first (ties by the term, for stable output)."""
        if not self.counts:
            return {}
        total = Counter()
        for counts in self.counts.values():
            total.update(counts)
        average_words = sum(total.values()) / len(self.counts)
        tops = {}
        for cluster, counts in self.counts.items():
            weights = {term: count * math.log(1 + average_words / total[term]) for term, count in counts.items()}
            tops[cluster] = [term for term, _ in sorted(weights.items(), key=lambda pair: (-pair[1], pair[0]))[:n]]
        return tops
