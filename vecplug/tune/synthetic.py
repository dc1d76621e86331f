"""A synthetic retrieval task a fresh model cannot do and a tuned one can: for tests, docs and benchmarks.

Each document is a few words of one vocabulary ("amber basalt cedar");
its query says the same with a second, unrelated vocabulary, word by word
("north river lamp"), shuffled. Nothing on the surface links a query to
its document, so an untuned model ranks near chance; the word mapping is
learnable from training pairs and carries over to held-out queries, which
combine the same words differently. It measures that tuning works, not
how much a real model gains on real text.
"""
from __future__ import annotations

import itertools
import random

DOCUMENT_WORDS = ("amber basalt cedar delta ember fjord granite harbor iris jasper kelp lagoon marble nectar onyx "
                  "pebble quartz reef saffron tundra umber velvet willow yarrow zephyr acorn birch coral dune "
                  "fern glacier heath").split()
QUERY_WORDS = ("north river lamp music table garden window paper silver orange winter doctor engine letter "
               "market number person summer travel castle pocket bottle finger stone metal circle animal basket "
               "candle mirror planet rabbit").split()


def synthetic_pairs(count: int = 400, words: int = 3, seed: int = 0) -> list[dict]:
    """``count`` pairs {"query", "positive"}: distinct documents of ``words`` words, queries in the other vocabulary."""
    rng = random.Random(seed)
    combinations = list(itertools.combinations(range(len(DOCUMENT_WORDS)), words))
    rng.shuffle(combinations)
    pairs = []
    for combination in combinations[:count]:
        document = [DOCUMENT_WORDS[index] for index in combination]
        query = [QUERY_WORDS[index] for index in combination]
        rng.shuffle(query)
        pairs.append({"query": " ".join(query), "positive": " ".join(document)})
    return pairs
