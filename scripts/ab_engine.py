"""The engine alone, for A/B runs of two revisions: seconds per pass over the bench's corpora (best of 3).

    PYTHONPATH=/path/to/old/source .venv/bin/python scripts/ab_engine.py   # the revision on PYTHONPATH
    .venv/bin/python scripts/ab_engine.py                                  # the installed one
    .venv/bin/python scripts/ab_engine.py --shape tiny --size quick        # a smoke run (the tests)

Run the two revisions in alternating processes, several rounds: this
machine moves a whole process by 10-15%, so only alternation separates the
code from the machine. Uses the ModernBERT-base-shape model ``vecplug bench
--shape base`` writes (random weights; speed does not depend on them).
"""
import argparse
import json
import time

import vecplug
from vecplug.bench import corpora
from vecplug.testing import cached_model


def best_of_three(model, texts: list[str]) -> float:
    model.embed_documents(texts[:64])  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        model.embed_documents(texts)
        best = min(best, time.perf_counter() - start)
    return round(best, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="base", help="the model shape (base, as in BENCHMARKS.md; tiny for a smoke run)")
    parser.add_argument("--size", default="cpu", help="the corpora's size, as `vecplug bench` names them (cpu, quick)")
    options = parser.parse_args()
    model = vecplug.load_model(cached_model("bench-models", options.shape))
    seconds = {name: best_of_three(model, texts) for name, texts in corpora(options.size).items()}
    print(json.dumps({"source": vecplug.__file__, **seconds}))


if __name__ == "__main__":
    main()
