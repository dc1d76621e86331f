"""``LanceDBStore``: a LanceDB table as a ``vecplug.stores.VectorStore`` for search, recommend, cluster, dedup.

Opened by ``vecplug_open_store`` for ``--lancedb PATH_OR_URI --table T``: a
folder must exist (``lancedb.connect`` would make an empty database there);
a URI (``s3://...``, ``db://...``) is passed to LanceDB as it is. Works on
the stored vectors only, through LanceDB's own calls: a vector search with
cosine distance (the table's index when it has one), filtered scans
(``vectors``, ``items``, in batches), and ``merge_insert`` for labels.

The columns come from the table's own record of its ``"vecplug"``
embedding function (schema metadata: source and vector column, and the
model), read without building the function, so opening a table loads no
model: ``cluster`` and ``dedup`` never need one. ``--column``,
``--text-column`` and ``--id-column`` override them; the id column is
``id`` unless named (LanceDB tables have no primary key).
"""
from __future__ import annotations

import json
from pathlib import Path

from vecplug import InvalidSettingError
from vecplug.analysis.clustering import check_label_field
from vecplug.analysis.recommending import recommend_by_average
from vecplug.stores import Hit, StoredItem, StoreNotFoundError, UnknownIdsError, id_as_stored

DEFAULT_ID_COLUMN = "id"
# Ids per ``IN (...)`` list: one filtered scan each, or one update (a commit) each.
IDS_PER_SCAN = 1000
IDS_PER_UPDATE = 10_000


def open_table(location: str, name: str):
    import lancedb

    if "://" not in location and not Path(location).is_dir():
        raise StoreNotFoundError(f"there is no LanceDB database in {location!r} (--lancedb): not a folder")
    try:
        return lancedb.connect(location).open_table(name)
    except ValueError:  # LanceDB: "Table 'x' was not found"
        raise StoreNotFoundError(f"there is no LanceDB table {name!r} in {location} (--table)") from None


def recorded_function(table, vector_column: str | None = None) -> dict | None:
    """The table's record of its vecplug embedding function (``name``, ``model``, ``source_column``,
    ``vector_column``), read from the schema metadata without building it; None when it has none."""
    metadata = table.schema.metadata or {}
    try:
        functions = json.loads(metadata.get(b"embedding_functions", b"[]"))
    except ValueError:
        return None
    found = [entry for entry in functions if isinstance(entry, dict) and entry.get("name") == "vecplug"
             and (vector_column is None or entry.get("vector_column") == vector_column)]
    return found[0] if found else None


def quote_name(name: str) -> str:
    """A column name in LanceDB's SQL (backticks; a backtick in the name doubled)."""
    return "`" + name.replace("`", "``") + "`"


class LanceDBStore:
    """One LanceDB table: its id, text and vector columns, and the model it recorded."""

    def __init__(self, table, *, vector_column: str | None = None, text_column: str | None = None,
                 id_column: str | None = None, description: str | None = None):
        self.table = table
        self.description = f"LanceDB table {table.name!r}" + (f" in {description}" if description else "")
        schema = table.schema
        self._function = recorded_function(table, vector_column)
        self.vector_column = vector_column or (self._function or {}).get("vector_column") or self._only_vector(schema)
        self.text_column = text_column or (self._function or {}).get("source_column")
        self.id_column = id_column or DEFAULT_ID_COLUMN
        for option, column in (("--column", self.vector_column), ("--text-column", self.text_column),
                               ("--id-column", self.id_column)):
            if column is not None and column not in schema.names:
                raise StoreNotFoundError(f"{self.description} has no column {column!r} ({option}); "
                                         f"its columns: {', '.join(schema.names)}")
        self._ids_are_integers = _is_integer(schema.field(self.id_column).type)

    @classmethod
    def open(cls, location: str, table: str, *, vector_column=None, text_column=None, id_column=None):
        return cls(open_table(location, table), vector_column=vector_column, text_column=text_column,
                   id_column=id_column, description=location)

    def _only_vector(self, schema) -> str:
        import pyarrow as pa

        vectors = [field.name for field in schema if pa.types.is_fixed_size_list(field.type)]
        if len(vectors) != 1:
            raise StoreNotFoundError(f"{self.description} records no vecplug embedding function and has "
                                     f"{len(vectors)} vector columns ({', '.join(vectors) or 'none'}): "
                                     "name one with --column")
        return vectors[0]

    def recorded_model(self) -> dict | None:
        if self._function is None or not isinstance(self._function.get("model"), dict):
            return None
        return dict(self._function["model"])

    def count(self) -> int:
        return self.table.count_rows(f"{quote_name(self.vector_column)} IS NOT NULL")

    # -- ids in SQL ---------------------------------------------------------------
    def _id(self, value):
        return id_as_stored(value, self._ids_are_integers)

    def _in_list(self, ids) -> str:
        literals = [str(item) if isinstance(item, int) else "'" + str(item).replace("'", "''") + "'" for item in ids]
        return f"{quote_name(self.id_column)} IN ({', '.join(literals)})"

    # -- the Protocol -------------------------------------------------------------
    def nearest(self, vector, k: int, *, where: str | None = None, exclude=()) -> list[Hit]:
        excluded = [item for item in (self._id(value) for value in exclude) if item is not None]
        conditions = [f"({where})"] if where else []
        if excluded:
            conditions.append(f"NOT {self._in_list(excluded)}")
        query = (self.table.search([float(value) for value in vector], vector_column_name=self.vector_column)
                 .distance_type("cosine").limit(k).select(self._columns("_distance")))
        if conditions:
            query = query.where(" AND ".join(conditions), prefilter=True)
        try:
            rows = query.to_list()
        except ValueError as error:  # LanceDB: "Invalid input, Error parsing statement: ..."
            if where is None:
                raise
            raise InvalidSettingError(f"--where is not a LanceDB filter ({' '.join(str(error).split())[:300]}); "
                                      "e.g. \"topic = 'space'\"") from None
        return [Hit(row[self.id_column], 1.0 - float(row["_distance"]), self._text(row)) for row in rows]

    def vectors(self, ids) -> dict:
        import numpy as np

        asked = list(ids)
        wanted = {self._id(item): item for item in asked if self._id(item) is not None}
        found = {}
        keys = list(wanted)
        for start in range(0, len(keys), IDS_PER_SCAN):
            rows = (self.table.search().where(self._in_list(keys[start:start + IDS_PER_SCAN]))
                    .select([self.id_column, self.vector_column]).limit(None).to_list())
            for row in rows:
                if row[self.vector_column] is not None:
                    found[wanted[row[self.id_column]]] = np.asarray(row[self.vector_column], dtype=np.float32)
        missing = [str(item) for item in asked if item not in found]
        if missing:
            raise UnknownIdsError(f"no row with {self.id_column} {', '.join(missing)} in {self.description}")
        return found

    def recommend(self, positive, negative, k: int) -> list[Hit]:
        return recommend_by_average(self, list(positive), list(negative or ()), k)

    def items(self, batch_size: int = 1000):
        import numpy as np

        reader = (self.table.search().where(f"{quote_name(self.vector_column)} IS NOT NULL")
                  .select(self._columns(self.vector_column)).to_batches(batch_size))
        for batch in reader:
            if not batch.num_rows:
                continue
            flat = batch.column(self.vector_column).flatten().to_numpy(zero_copy_only=False)
            vectors = np.array(flat, dtype=np.float32).reshape(batch.num_rows, -1)  # a copy: Arrow's is read-only
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            ids = batch.column(self.id_column).to_pylist()
            texts = batch.column(self.text_column).to_pylist() if self.text_column else [None] * len(ids)
            yield [StoredItem(item, vector, text if isinstance(text, str) else None)
                   for item, vector, text in zip(ids, vectors, texts)]

    def write_labels(self, field: str, labels) -> int:
        """Every label into the int64 column ``field`` (added when the table lacks it): one ``update`` per label
        and ``IDS_PER_UPDATE`` ids.

        Not ``merge_insert``: LanceDB runs a table's embedding functions on
        any write that lacks the vector column, so a merge of (id, label)
        would load the model and look for the text. An update rewrites only
        the rows it matches and embeds nothing. The labels are held as one
        list of ints per label (a few bytes an item) so that the updates
        are few; a failure part-way leaves some rows labelled, and running
        the command again writes them all.
        """
        from collections import defaultdict

        taken = tuple(column for column in (self.id_column, self.text_column, self.vector_column) if column)
        check_label_field(field, taken)
        schema = self.table.schema
        if field in schema.names and not _is_integer(schema.field(field).type):
            raise InvalidSettingError(f"--write {field}: that column of {self.description} holds "
                                      f"{schema.field(field).type}, not integers; pick another name")
        by_label = defaultdict(list)
        for item_id, label in labels:
            by_label[int(label)].append(self._id(item_id))
        if field not in schema.names:
            self.table.add_columns({field: "CAST(NULL AS BIGINT)"})
        for label, ids in sorted(by_label.items()):
            for start in range(0, len(ids), IDS_PER_UPDATE):
                self.table.update(where=self._in_list(ids[start:start + IDS_PER_UPDATE]), values={field: label})
        return sum(map(len, by_label.values()))

    def close(self) -> None:
        pass  # LanceDB holds no connection open

    def _columns(self, *extra: str) -> list[str]:
        return [column for column in (self.id_column, self.text_column) if column] + list(extra)

    def _text(self, row) -> str | None:
        text = row.get(self.text_column) if self.text_column else None
        return text if isinstance(text, str) else None


def _is_integer(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(arrow_type)


def recommend(table, positive, negative=(), limit: int = 10, *, column: str | None = None,
              id_column: str | None = None, text_column: str | None = None) -> list[Hit]:
    """Rows like ``positive`` and unlike ``negative`` (ids) from their stored vectors, best first.

    Returns ``vecplug.stores.Hit`` (``id``, ``score``: cosine similarity to
    the recommendation vector, ``text``: the source column), never one of
    the given ids; an id not in the table raises ``UnknownIdsError``. The
    columns default as for ``--lancedb`` (the vecplug function's, and ``id``).
    """
    if isinstance(positive, str) or isinstance(negative, str):
        raise TypeError("positive and negative are lists of ids")
    store = LanceDBStore(table, vector_column=column, text_column=text_column, id_column=id_column)
    return store.recommend(positive, negative, limit)
