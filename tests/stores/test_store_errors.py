"""The store commands' failures as a person sees them: one line on stderr, exit status 2 (real processes)."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import store_corpus


def run_vecplug(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.slow  # nine fresh processes (chromadb, qdrant-client imports): about 25 s on 2 cores
def test_store_mistakes_are_one_line_and_exit_2(chroma_corpus, qdrant_corpus, tmp_path):
    chroma, qdrant = ["--chroma", str(chroma_corpus)], ["--qdrant", str(qdrant_corpus)]
    cases = [
        (["search", "x"], "name a store: --dsn DSN --table T, --chroma"),
        (["dedup", *chroma, *qdrant, "--collection", "corpus"], "name one store, not --chroma and --qdrant"),
        (["search", "x", *chroma, "--collection", "missing"], "no Chroma collection 'missing'"),
        (["cluster", *qdrant, "--collection", "missing"], "no Qdrant collection 'missing'"),
        (["search", "x", "--chroma", str(tmp_path / "none"), "--collection", "c"], "no Chroma store in"),
        (["recommend", *chroma, "--collection", "corpus", "--positive", "1", "--negative", "9999"],
         "no record with id 9999"),
        (["recommend", *qdrant, "--collection", "corpus", "--positive", "777", "--positive", "1"],
         "no point with id 777"),
        (["search", "x", *qdrant, "--collection", "corpus", "--column", "v"], "--column only apply to --dsn"),
    ]
    with ThreadPoolExecutor(2) as pool:  # Qdrant's local mode locks its folder: no two at once on it
        processes = list(pool.map(lambda case: run_vecplug(*case[0]), [case for case in cases if qdrant[1]
                                                                           not in case[0]]))
    processes += [run_vecplug(*args) for args, _ in cases if qdrant[1] in args]
    ordered = [case for case in cases if qdrant[1] not in case[0]] + [case for case in cases if qdrant[1] in case[0]]
    for (args, text), process in zip(ordered, processes):
        shown = f"vecplug {' '.join(args)}: exit {process.returncode}, stderr {process.stderr!r}"
        lines = [line for line in process.stderr.splitlines() if line.strip()]
        assert process.returncode == 2 and len(lines) == 1 and text in lines[0], shown


@pytest.mark.slow  # two fresh processes: about 10 s
def test_cluster_and_dedup_show_a_bar_on_a_terminal_only(chroma_corpus):
    """A person at a terminal sees progress (items of each pass); a pipe gets none."""
    from terminal import run_with_terminal_stderr

    store = ["--chroma", str(chroma_corpus), "--collection", "corpus"]
    count = len(store_corpus.documents())
    code, shown = run_with_terminal_stderr([sys.executable, "-m", "vecplug", "cluster", *store, "-k", "4"])
    assert code == 0 and "clustering" in shown and f"{2 * count}/{2 * count}" in shown, shown
    code, shown = run_with_terminal_stderr([sys.executable, "-m", "vecplug", "dedup", *store])
    assert code == 0 and "dedup" in shown and f"{count}/{count}" in shown, shown
    piped = run_vecplug("dedup", *store, "--json")
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
