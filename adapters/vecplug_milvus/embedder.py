"""``MilvusEmbedder``: vecplug's vectors into and out of a ``pymilvus.MilvusClient``."""
from __future__ import annotations

import json
from collections.abc import Collection, Iterable

from vecplug import EmbeddingModel, load_model
from vecplug.chunking import ChunkSettings
from vecplug.progress import progress
from vecplug.records import batched

from . import collection
from .collection import ID_FIELD, TEXT_FIELD
from .chunks import CHUNK_FIELDS, chunk_rows, delete_sources
from .ingest import RowBuilder, check_inputs, iter_records, refuse_repeats

DEFAULT_BATCH_SIZE = 256
# What search returns of each hit when output_fields is None: the text and every metadata field, not the vector.
DEFAULT_OUTPUT_FIELDS = (TEXT_FIELD, "$meta")


def resolve_model(model, dimensions, device, dtype) -> EmbeddingModel:
    if isinstance(model, EmbeddingModel):
        if device is not None or dtype is not None:
            raise TypeError("device and dtype choose how a model is loaded, and this one is loaded already; "
                            "pass its name instead, or drop device/dtype")
        if dimensions is not None and dimensions != model.dimensions:
            raise TypeError(f"dimensions={dimensions!r}, but the model passed makes {model.dimensions}-dimensional "
                            "vectors; pass its name with dimensions=, or drop dimensions")
        return model
    return load_model(model, device=device, dtype=dtype, dimensions=dimensions)


class MilvusEmbedder:
    """Create, fill and query Milvus collections with a vecplug model.

        client = MilvusClient("milvus.db")              # Milvus Lite, in this process
        embedder = MilvusEmbedder(client)               # $VECPLUG_MODEL or the default model
        embedder.create_collection("docs")
        embedder.insert("docs", texts, metadata=[{"topic": ...}, ...])
        embedder.search("docs", "a question", limit=5, filter='topic == "x"')

    ``model``: a name, alias, local directory or loaded model, run in this
    process; or a ``vecplug serve`` URL, run there (the collection records
    the URL, so ``from_collection`` finds the server again). ``dimensions``:
    a Matryoshka cut. ``batch_size``: records read, passed through the
    ``vecplug_before_ingest`` plugins, embedded and written together.
    """

    def __init__(self, client, model=None, dimensions=None, *, device=None, dtype=None,
                 batch_size: int = DEFAULT_BATCH_SIZE):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.client = client
        self.model = resolve_model(model, dimensions, device, dtype)
        self.batch_size = batch_size
        self._loaded: set[str] = set()  # collections checked and loaded for search by this embedder

    def __repr__(self) -> str:
        return f"<MilvusEmbedder {self.model.name} dim={self.model.dimensions}>"

    @classmethod
    def from_collection(cls, client, name: str, *, device=None, dtype=None, **options) -> "MilvusEmbedder":
        """An embedder with the model the collection records (ModelMismatchError if that model changed).

        The collection is loaded too: a reopened Milvus Lite ``.db`` starts
        with every collection released.
        """
        model = collection.model_from_collection(name, collection.describe(client, name), device, dtype)
        embedder = cls(client, model, **options)
        collection.ensure_loaded(client, name)
        embedder._loaded.add(name)
        return embedder

    # -- collections ------------------------------------------------------
    def create_collection(self, name: str, exist_ok: bool = False, id_type: str = "int") -> bool:
        """Create a collection for this model; True if created.

        Primary key ``id`` (INT64, or VARCHAR with ``id_type="str"``),
        ``vector`` sized for the model with a COSINE ``AUTOINDEX``,
        ``document`` VARCHAR, dynamic fields for metadata; the model's spec
        and fingerprint recorded in the collection's properties. A taken
        name of another model or layout is refused; of this model it is an
        error unless ``exist_ok`` (then False, and nothing changes).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"the collection name must be a non-empty str, got {name!r}")
        if self.client.has_collection(name):
            self.check_collection(name)
            if exist_ok:
                return False
            raise collection.exists(name)
        schema, index = collection.schema_and_index(self.client, self.model, id_type)
        properties = {collection.PROPERTY_KEY: json.dumps(collection.model_record(self.model))}
        self.client.create_collection(name, schema=schema, index_params=index, properties=properties)
        return True

    def check_collection(self, name: str) -> dict:
        """Its description, once sure it holds this model's vectors (ModelMismatchError if not)."""
        description = collection.describe(self.client, name)
        collection.check_collection(name, description, self.model)
        return description

    def _writer(self, name: str) -> RowBuilder:
        description = self.check_collection(name)
        collection.ensure_loaded(self.client, name)  # the id checks query it
        return RowBuilder(self.client, name, self.model, collection.id_type_of(description))

    # -- writes -----------------------------------------------------------
    def insert(self, name: str, texts, ids=None, metadata=None, *, chunk_tokens: int | None = None,
               overlap_tokens: int = 0, late: bool = False) -> list:
        """Embed and insert a finite input; return the ids written, in order.

        All or nothing: every text, id and metadata dict is checked, the
        plugins run and every row is embedded before the first write. Ids
        already in the collection are refused (``upsert`` replaces). With
        ``ids=None``, ids are generated (see ``vecplug_milvus.ids``).
        Metadata keys become dynamic fields, filterable in ``search``.

        ``chunk_tokens``: one row per chunk of each text
        (``model.embed_chunks(texts, chunk_tokens, overlap_tokens, late)``),
        with ``source_id``, ``chunk_index``, ``chunk_start``, ``chunk_end``
        (see ``vecplug_milvus.chunks``); returns the chunk rows' ids.
        """
        chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)  # bad settings fail before any work
        return self._write_all(name, texts, ids, metadata, "insert", chunking)

    def upsert(self, name: str, texts, ids, metadata=None, *, chunk_tokens: int | None = None,
               overlap_tokens: int = 0, late: bool = False) -> list:
        """``insert``, replacing the rows whose ids are given; ids are required.

        With ``chunk_tokens``, everything stored under these ids (their
        chunk rows by ``source_id``, and a whole-document row) is deleted
        after every chunk is embedded and before the new chunks go in, so a
        shorter text leaves no stale chunk (decision 0079).
        """
        if ids is None:
            raise TypeError("upsert replaces rows by id: pass ids (insert generates them)")
        chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)
        return self._write_all(name, texts, ids, metadata, "upsert", chunking)

    def _write_all(self, name: str, texts, ids, metadata, operation: str, chunking: ChunkSettings | None) -> list:
        texts, ids, metadata = (_as_list(value) for value in (texts, ids, metadata))
        writer = self._writer(name)
        reserved = CHUNK_FIELDS if chunking is not None else ()
        check_inputs(texts, ids, metadata, writer.id_type, reserved)
        batches = batched(iter_records(texts, ids, metadata, writer.id_type), self.batch_size)
        refuse_stored = operation == "insert"
        if chunking is None:
            rows = [row for batch in batches for row in writer.rows(batch, refuse_stored)]
        else:
            built = [chunk_rows(writer, batch, chunking, refuse_stored) for batch in batches]
            sources = [source for chunked in built for source in chunked.source_ids]
            refuse_repeats(sources, "ids")
            rows = [row for chunked in built for row in chunked.rows]
        written = [row[ID_FIELD] for row in rows]
        refuse_repeats(written, "ids")  # across batches (each batch checked its own)
        if chunking is not None:
            if operation == "upsert" and sources:
                delete_sources(self.client, name, sources)  # embedded already: a model error changes nothing
            operation = "insert"  # chunk rows are new rows
        for start in range(0, len(rows), self.batch_size):
            try:
                getattr(self.client, operation)(name, rows[start:start + self.batch_size])
            except Exception as error:
                if start:
                    _note(error, f"vecplug_milvus.{operation}: {start} rows were written before this one failed")
                raise
        return written

    def upload(self, name: str, texts: Iterable, ids: Iterable | None = None, metadata: Iterable | None = None,
               batch_size: int | None = None, quiet: bool = False, *, chunk_tokens: int | None = None,
               overlap_tokens: int = 0, late: bool = False) -> int:
        """Stream texts of any length into ``name``, one insert per batch; return the rows written.

        ``texts``, ``ids`` and ``metadata`` may be generators, read together
        one batch at a time, so memory holds one batch whatever the length.
        Each item is checked as it is read; an error (a bad item, ids that
        run out) comes before the batch it falls in is written, after the
        earlier ones were: the exception says how many. A progress bar
        shows on a terminal (``quiet=True``: never). ``chunk_tokens``: one row
        per chunk, as in ``insert`` (documents already stored are refused).
        """
        chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)
        batch_size = self.batch_size if batch_size is None else batch_size
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        writer = self._writer(name)
        check_inputs(texts, ids, metadata, writer.id_type, CHUNK_FIELDS if chunking is not None else ())
        written = 0
        total = len(texts) if isinstance(texts, Collection) else None
        with progress(total=total, desc=f"embedding into {name}", unit="text", quiet=quiet) as bar:
            try:
                for batch in batched(iter_records(texts, ids, metadata, writer.id_type), batch_size):
                    rows = writer.rows(batch) if chunking is None else chunk_rows(writer, batch, chunking, True).rows
                    if rows:
                        self.client.insert(name, rows)
                    written += len(rows)
                    bar.update(len(batch))
            except Exception as error:
                if written:
                    _note(error, f"vecplug_milvus.upload: {written} rows were written before this failed")
                raise
        return written

    # -- queries ----------------------------------------------------------
    def query_vector(self, text: str) -> list[float]:
        """The vector of a search text, with the model's query prompt (for ``client.search`` yourself)."""
        if not isinstance(text, str):
            raise TypeError(f"the search text must be str, got {type(text).__name__} ({text!r:.60})")
        return self.model.embed_queries([text])[0].tolist()

    def search(self, name: str, text: str, limit: int = 10, filter: str | None = None,
               output_fields: list[str] | None = None, **options) -> list[dict]:
        """The ``limit`` rows nearest to ``text`` (embedded with the query prompt), best first.

        Each hit is ``{"id", "distance", "entity"}``; ``distance`` is the
        cosine similarity (Milvus's COSINE metric: higher is nearer).
        ``filter``: a Milvus boolean expression over the fields and metadata
        (``'topic == "news" and year > 2020'``). ``output_fields``: what
        ``entity`` holds; None: the document and every metadata field.
        ``options`` go to ``client.search`` (``search_params`` ...). The
        collection is checked and loaded on this embedder's first search of it.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        if name not in self._loaded:
            self.check_collection(name)
            collection.ensure_loaded(self.client, name)
            self._loaded.add(name)
        fields = list(DEFAULT_OUTPUT_FIELDS if output_fields is None else output_fields)
        # an empty list means every field to Milvus Lite: ask for the id alone, and leave it out of the entity
        found = self.client.search(name, [self.query_vector(text)], limit=limit, filter=filter or "",
                                   output_fields=fields or [ID_FIELD], **options)
        return [{"id": hit["id"], "distance": float(hit["distance"]), "entity": _entity(hit, fields)}
                for hit in found[0]]


def _as_list(value):
    if value is None or isinstance(value, (Collection, str, bytes)):
        return value  # a str is refused with a clear message by check_inputs
    if isinstance(value, Iterable):
        return list(value)
    return value


def _entity(hit, fields: list) -> dict:
    entity = dict(hit.get("entity") or {})
    if not fields:
        entity.pop(ID_FIELD, None)
    return entity


def _note(error: Exception, note: str) -> None:
    if hasattr(error, "add_note"):  # Python 3.11+
        error.add_note(note)
