"""`vecplug tune` on a synthetic task a fresh model cannot do: it learns, and the result is a normal model directory.

One real run (module fixture, ~30 s on two CPU cores): a tiny random-weight
ModernBERT with max_tokens 512 and the nomic prompts, 300 training pairs.
The test keeps 100 more pairs to itself: queries the run never saw, not
even in its own held-out split, measured by the test with ``load_model``.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import vecplug
from vecplug.testing import NOMIC_PROMPTS, write_model
from vecplug.tune.synthetic import synthetic_pairs

from tune_helpers import recall_at_10, run_tune_cli, write_pairs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune-learns")
    base = write_model(root / "base", shape="tiny", max_tokens=512)
    pairs = synthetic_pairs(400, seed=1)
    seen, unseen = pairs[:300], pairs[300:]
    workdir = root / "cwd"
    workdir.mkdir()
    out = root / "outputs" / "tuned"
    out.parent.mkdir()
    process = run_tune_cli("--pairs", write_pairs(root / "pairs.jsonl", seen), "-m", base, "--out", out, "--json",
                           "--matryoshka", "64,32", "--seed", "3", cwd=workdir)
    return {"base": base, "out": out, "pairs": pairs, "unseen": unseen, "process": process, "cwd": workdir}


def test_tuning_improves_recall_on_queries_it_never_saw(tuned_run):
    process = tuned_run["process"]
    assert process.returncode == 0, process.stderr
    summary = json.loads(process.stdout.strip().splitlines()[-1])
    assert summary["path"] == str(tuned_run["out"].absolute())
    assert summary["tuned"]["recall@10"] > summary["base"]["recall@10"]
    corpus = [pair["positive"] for pair in tuned_run["pairs"]]
    before = recall_at_10(tuned_run["base"], tuned_run["unseen"], corpus)
    after = recall_at_10(tuned_run["out"], tuned_run["unseen"], corpus)
    assert before < 0.2 and after > 0.6 and after > before + 0.4, (before, after)


def test_the_table_and_the_plan_are_shown(tuned_run):
    stderr = tuned_run["process"].stderr
    assert "epochs, batch size" in stderr and "learning rate" in stderr and "estimated training time" in stderr
    assert "recall@10" in stderr and "nDCG" in stderr.replace("ndcg", "nDCG")


def test_nothing_is_written_outside_the_output_folder(tuned_run):
    assert list(tuned_run["cwd"].iterdir()) == []  # no trainer_output, runs/, model card in the working directory
    assert [path.name for path in tuned_run["out"].parent.iterdir()] == ["tuned"]  # no staging folder left


def test_the_tuned_folder_quotes_none_of_the_pairs(tuned_run):
    """No model card: sentence-transformers' quotes training pairs, and a model folder gets shared."""
    assert not (tuned_run["out"] / "README.md").exists()
    first_pair = tuned_run["pairs"][0]  # one it trained on
    for path in tuned_run["out"].rglob("*"):
        if path.is_file() and path.suffix in {".md", ".json", ".txt"}:
            assert first_pair["positive"] not in path.read_text(errors="replace"), path


def test_the_tuned_model_keeps_the_base_space_settings_and_records_the_run(tuned_run):
    base = vecplug.load_model(str(tuned_run["base"]), dtype="float32")
    tuned = vecplug.load_model(str(tuned_run["out"]), dtype="float32")
    assert tuned.spec.max_tokens == base.spec.max_tokens == 512
    assert tuned.spec.prompts == base.spec.prompts == NOMIC_PROMPTS
    assert tuned.spec.dimensions == base.spec.dimensions == 64
    assert tuned.spec.matryoshka_dims == (64, 32) and not tuned.spec.any_dimensions
    assert tuned.fingerprint != base.fingerprint
    record = json.loads((tuned_run["out"] / "vecplug_tune.json").read_text())
    assert record["base_model"] == {"name": str(tuned_run["base"]), "fingerprint": base.fingerprint}
    assert record["model"]["fingerprint"] == tuned.fingerprint
    assert record["pairs"] == 300 and record["seed"] == 3 and record["options"]["matryoshka"] == [64, 32]
    assert record["tuned"]["recall@10"] > record["base"]["recall@10"]
    # adapters that stored the base's vectors refuse the tuned model, as any other model
    with pytest.raises(vecplug.ModelMismatchError):
        vecplug.check_same_space(base, tuned, where="collection 'docs'")


def test_the_tuned_directory_gives_the_same_vectors_in_sentence_transformers(tuned_run):
    from sentence_transformers import SentenceTransformer

    tuned = vecplug.load_model(str(tuned_run["out"]), dtype="float32")
    st_model = SentenceTransformer(str(tuned_run["out"]), device="cpu")
    assert st_model.max_seq_length == 512 and st_model.prompts == NOMIC_PROMPTS
    texts = [pair["positive"] for pair in tuned_run["unseen"][:8]] + ["a longer text " * 40]
    np.testing.assert_allclose(tuned.embed_documents(texts), st_model.encode_document(texts), atol=1e-5)
    queries = [pair["query"] for pair in tuned_run["unseen"][:8]]
    np.testing.assert_allclose(tuned.embed_queries(queries), st_model.encode_query(queries), atol=1e-5)
    # the recorded Matryoshka size is usable in vecplug
    assert vecplug.load_model(str(tuned_run["out"]), dtype="float32", dimensions=32).embed_queries(["x"]).shape == (1, 32)


def test_the_readme_walk_through_serves_the_tuned_model_and_reembeds_a_vectorizer(tuned_run, pg_cluster, fresh_db):
    """The README's three commands: tune (above), `vecplug serve -m DIR`, `vecplug pg reembed` to that server."""
    pytest.importorskip("psycopg")
    from pg_vectorizer_helpers import VECPLUG_CLI, assert_embedded_as, embedding_server, install, vectors

    import vecplug_pgvector

    texts = {index: pair["positive"] for index, pair in enumerate(tuned_run["unseen"][:20])}
    dsn = pg_cluster.dsn(fresh_db)
    with embedding_server(tuned_run["base"]) as base_server:
        install(dsn, base_server.url)
        with pg_cluster.connect(fresh_db) as conn:
            conn.execute("CREATE TABLE articles (id integer PRIMARY KEY, body text)")
            conn.execute("SELECT vecplug.create_vectorizer('articles', 'body')")
            conn.execute("INSERT INTO articles SELECT * FROM unnest(%s::int[], %s::text[])",
                         [list(texts), list(texts.values())])
        assert vecplug_pgvector.Worker(dsn, server_url=base_server.url).run(once=True).embedded == len(texts)
    with embedding_server(tuned_run["out"]) as tuned_server:
        process = subprocess.run([*VECPLUG_CLI, "pg", "reembed", "--dsn", dsn, "--vectorizer",
                                  "public.articles.embedding", "--server-url", tuned_server.url],
                                 capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, process.stderr[-2000:]
    tuned = vecplug.load_model(str(tuned_run["out"]), dtype="float32")
    with pg_cluster.connect(fresh_db) as conn:
        assert_embedded_as(vectors(conn, "articles"), dict(zip(texts, tuned.embed_documents(list(texts.values())))))
        recorded = conn.execute("SELECT model_fingerprint FROM vecplug.vectorizers").fetchone()[0]
    assert recorded == tuned.fingerprint
