"""torch threads on a shared CPU, side by side: vecplug's default, one thread, and torch's old default.

    .venv/bin/python scripts/threads_compare.py [--rounds 2] [--models tiny,base]

Each configuration embeds the same texts in a fresh process (OpenMP reads
its settings at start-up), in turns, alone and beside a busy process (a
Python busy loop holding one core). Prints one JSON line per run; the
ratios between configurations of the same round are the result, since
absolute speed on a shared machine means little. Writes random-weight
models to a temporary folder unless --tiny/--base name existing ones.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CONFIGS = {
    "vecplug default": {},
    "VECPLUG_THREADS=1": {"VECPLUG_THREADS": "1"},
    "old: 2 threads, spinning": {"VECPLUG_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
}
CORPORA = {"tiny": ("short", 4000), "base": ("paragraphs", 200)}

ONE_RUN = textwrap.dedent("""
    import json, sys, time
    import vecplug
    from vecplug.testing import stdlib_paragraphs
    paragraphs = list(stdlib_paragraphs())
    kind, count = sys.argv[2], int(sys.argv[3])
    if kind == "short":
        texts = [f"{i} {paragraphs[i % len(paragraphs)][:60]}" for i in range(count)]
    else:
        texts = [paragraphs[(i * 7) % len(paragraphs)] for i in range(count)]
    model = vecplug.load_model(sys.argv[1])
    model.embed_documents(texts[:32])
    start = time.perf_counter()
    done = sum(len(chunk) for chunk in model.iter_embed_chunks(iter(texts)))
    elapsed = time.perf_counter() - start
    print(json.dumps({"texts_per_s": round(done / elapsed, 1), "seconds": round(elapsed, 2),
                      "threads": model.describe()["threads"],
                      "threads_reason": model.describe()["threads_reason"]}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default="tiny,base")
    parser.add_argument("--tiny")
    parser.add_argument("--base")
    arguments = parser.parse_args()
    from vecplug.testing import write_model

    folder = tempfile.mkdtemp(prefix="vecplug-threads-")
    paths = {name: getattr(arguments, name) or str(write_model(f"{folder}/{name}", shape=name))
             for name in arguments.models.split(",")}
    for round_number in range(arguments.rounds):
        for busy in (False, True):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                for model, path in paths.items():
                    kind, count = CORPORA[model]
                    for name, settings in CONFIGS.items():
                        environment = {key: value for key, value in os.environ.items()
                                       if not key.startswith(("VECPLUG_", "OMP_"))}
                        environment.update(TOKENIZERS_PARALLELISM="false", **settings)
                        row = {"round": round_number, "busy": busy, "model": model, "config": name,
                               "load1": round(os.getloadavg()[0], 1)}
                        run = subprocess.run([sys.executable, "-c", ONE_RUN, path, kind, str(count)],
                                             env=environment, capture_output=True, text=True)
                        row.update(json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0
                                   else {"error": run.stderr[-300:]})
                        print(json.dumps(row), flush=True)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()


if __name__ == "__main__":
    main()
