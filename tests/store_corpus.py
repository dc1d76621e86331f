"""One synthetic corpus for the store commands, loadable into Chroma, Qdrant, Milvus Lite, LanceDB and PostgreSQL.

Four planted topics of ten distinct hand-written sentences each, plus
planted duplicates: exact copies of three sentences and near copies
(punctuation or one word changed) of three more, each under its own id and
in its original's topic. Ids are the ints 1..N (Chroma keeps them as str).
Embedded with the MiniLM plugin (real weights, offline), so topics,
duplicates and questions mean something; loaded through vecplug's own
documented paths: ``vecplug_chroma.add``, ``QdrantEmbedder.upsert``,
``MilvusEmbedder.insert``, ``vecplug_lancedb.add`` into a table of the ``"vecplug"`` function, and for
PostgreSQL plain inserts (``create_table_sql`` / ``insert_rows``) that a
vectorizer then embeds (see tests/postgres and docs/postgres.md).
"""
from __future__ import annotations

import dataclasses

MODEL = "minilm"
TOPICS = {
    "astronomy": [
        "Sunlight takes about eight minutes to travel from the Sun to the Earth.",
        "Jupiter is the largest planet in the solar system and has dozens of moons.",
        "A light-year is the distance light travels through space in one year.",
        "The Andromeda galaxy is slowly moving towards our own Milky Way.",
        "Saturn's rings are made mostly of ice particles and small rocks.",
        "A telescope with a larger mirror collects more light from faint stars.",
        "Neutron stars are the collapsed cores of massive stars after a supernova.",
        "The Moon always shows the same face to the Earth because of tidal locking.",
        "Astronomers find exoplanets by watching stars dim as planets pass in front of them.",
        "Mars has the tallest volcano in the solar system, Olympus Mons.",
    ],
    "cooking": [
        "Knead the bread dough for ten minutes until it becomes smooth and elastic.",
        "Sear the steak in a very hot pan, then let it rest before slicing.",
        "A pinch of salt in caramel sauce balances its sweetness.",
        "Simmer the tomato sauce slowly with garlic, basil and olive oil.",
        "Whisk the egg whites until they form stiff peaks for the meringue.",
        "Toast the spices in a dry pan to release their aroma before grinding them.",
        "Rice should be rinsed under cold water to remove excess starch before cooking.",
        "Deglaze the roasting pan with wine to make a rich gravy.",
        "Chill the pastry dough before rolling it so the butter stays cold.",
        "Marinate the chicken overnight in yogurt, lemon juice and spices.",
    ],
    "football": [
        "The striker scored a header in the last minute to win the match.",
        "The goalkeeper saved a penalty kick and kept a clean sheet.",
        "The referee showed a red card after a dangerous tackle.",
        "The team plays a high press to win the ball back near the opponent's goal.",
        "The midfielder's long pass split the defence and set up the winning goal.",
        "Fans filled the stadium for the championship final on Saturday night.",
        "The coach changed the formation at half-time to add another defender.",
        "The winger dribbled past three defenders before crossing the ball.",
        "An offside decision by the video assistant referee cancelled the goal.",
        "The club signed a young forward from a rival league for a record fee.",
    ],
    "gardening": [
        "Water tomato plants deeply at the base in the early morning.",
        "Prune rose bushes in late winter, just before new growth begins.",
        "Compost made from kitchen scraps and leaves feeds the soil with nutrients.",
        "Plant tulip bulbs in autumn so they flower in the spring.",
        "Mulch around shrubs keeps the soil moist and suppresses weeds.",
        "Aphids on the young leaves can be washed off with a spray of soapy water.",
        "Lavender grows best in sunny spots with well-drained, sandy soil.",
        "Sow carrot seeds thinly in rows and thin the seedlings later.",
        "Raised beds warm up faster in spring and drain well after rain.",
        "Hang a bird feeder near the vegetable patch to attract insect-eating birds.",
    ],
}
EXACT_COPIES = [  # (topic, index of the sentence copied)
    ("astronomy", 1), ("cooking", 4), ("football", 7),
]
NEAR_COPIES = [  # (topic, index, the near copy)
    ("astronomy", 3, "The Andromeda galaxy is slowly moving toward our own Milky Way!"),
    ("cooking", 0, "Knead the bread dough for ten minutes, until it becomes smooth and elastic."),
    ("gardening", 4, "Mulch around the shrubs keeps the soil moist and suppresses weeds."),
]
# A question and the sentence that answers it (the semantic check).
QUESTION = "How long does light from the Sun need to reach us?"
ANSWER = TOPICS["astronomy"][0]


@dataclasses.dataclass(frozen=True)
class Document:
    id: int
    text: str
    topic: str


def documents() -> list[Document]:
    """Every document, ids 1..N: the topics' sentences in order, then the exact copies, then the near copies."""
    found = [(text, topic) for topic, texts in TOPICS.items() for text in texts]
    found += [(TOPICS[topic][index], topic) for topic, index in EXACT_COPIES]
    found += [(text, topic) for topic, _, text in NEAR_COPIES]
    return [Document(number, text, topic) for number, (text, topic) in enumerate(found, start=1)]


def id_of(text: str) -> int:
    """The id of the first document with ``text``."""
    return next(document.id for document in documents() if document.text == text)


def planted_pairs() -> set[tuple[int, int]]:
    """Every (a, b), a < b, of a sentence and its exact or near copy."""
    docs = documents()
    copies = docs[sum(len(texts) for texts in TOPICS.values()):]
    originals = [*((topic, index) for topic, index in EXACT_COPIES), *((topic, index) for topic, index, _ in NEAR_COPIES)]
    return {(id_of(TOPICS[topic][index]), copy.id) for (topic, index), copy in zip(originals, copies)}


def topic_labels() -> dict[int, str]:
    return {document.id: document.topic for document in documents()}


# -- loading --------------------------------------------------------------------
def load_chroma(path, name: str = "corpus", model: str = MODEL):
    """A persistent Chroma collection at ``path`` through ``vecplug_chroma.add`` (metadata: topic)."""
    import chromadb

    import vecplug_chroma

    client = chromadb.PersistentClient(str(path))
    collection = client.create_collection(name, embedding_function=vecplug_chroma.ModernBertEmbeddingFunction(model))
    docs = documents()
    vecplug_chroma.add(collection, [doc.text for doc in docs], ids=[str(doc.id) for doc in docs],
                       metadatas=[{"topic": doc.topic} for doc in docs])
    return collection


def load_qdrant(path, name: str = "corpus", model: str = MODEL) -> None:
    """A local-mode Qdrant collection at ``path`` through ``QdrantEmbedder.upsert`` (payload: topic)."""
    from qdrant_client import QdrantClient

    from vecplug_qdrant import QdrantEmbedder

    client = QdrantClient(path=str(path))
    try:
        embedder = QdrantEmbedder(client, model)
        embedder.create_collection(name)
        docs = documents()
        embedder.upsert(name, [doc.text for doc in docs], ids=[doc.id for doc in docs],
                        payloads=[{"topic": doc.topic} for doc in docs])
    finally:
        client.close()


def load_milvus(path, name: str = "corpus", model: str = MODEL) -> None:
    """A Milvus Lite collection in the ``.db`` at ``path`` through ``MilvusEmbedder.insert`` (metadata: topic);
    the file is let go after, so that any process can open it."""
    from pymilvus import MilvusClient

    import vecplug_milvus
    from vecplug_milvus import MilvusEmbedder

    client = MilvusClient(str(path))
    try:
        embedder = MilvusEmbedder(client, model)
        embedder.create_collection(name)
        docs = documents()
        embedder.insert(name, [doc.text for doc in docs], ids=[doc.id for doc in docs],
                        metadata=[{"topic": doc.topic} for doc in docs])
    finally:
        client.close()
        vecplug_milvus.release(path)


def load_lancedb(path, name: str = "corpus", model: str = MODEL) -> None:
    """A LanceDB table at ``path`` whose vecplug function embeds ``text``, filled through ``vecplug_lancedb.add``."""
    import lancedb
    from lancedb.embeddings import get_registry
    from lancedb.pydantic import LanceModel, Vector

    import vecplug_lancedb

    function = get_registry().get("vecplug").create(name=model)

    class Corpus(LanceModel):
        id: int
        text: str = function.SourceField()
        topic: str
        vector: Vector(function.ndims()) = function.VectorField()

    table = lancedb.connect(str(path)).create_table(name, schema=Corpus)
    vecplug_lancedb.add(table, [{"id": doc.id, "text": doc.text, "topic": doc.topic} for doc in documents()],
                        id_field="id", quiet=True)


def create_table_sql(table: str = "corpus") -> str:
    """A plain table for the corpus; a vectorizer on ``body`` embeds it (PostgreSQL)."""
    return f"CREATE TABLE {table} (id int PRIMARY KEY, body text NOT NULL, topic text NOT NULL)"


def insert_rows(connection, table: str = "corpus") -> None:
    """Insert every document with a psycopg connection (the caller commits)."""
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} (id, body, topic) VALUES (%s, %s, %s)",
                           [(doc.id, doc.text, doc.topic) for doc in documents()])
