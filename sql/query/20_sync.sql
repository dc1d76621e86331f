-- The trigger of sync vectorizers (mode => 'sync'): rows are embedded inside
-- the statement that writes them, one request to the server per statement
-- (more only past 256 texts or 4 MB of text, under the server's limits),
-- never one per row. Needs plpython3u. Repeatable.
--
-- AFTER INSERT / UPDATE, per statement, with transition tables: the rows that
-- need a vector (text, no vector, text changed) go to vecplug._embed_remote
-- with the vectorizer's model and size, and their vectors are written back
-- with one UPDATE. If the server cannot embed them, on_error decides:
-- 'queue' (default) queues them for `vecplug pg worker` with a NOTICE and the
-- statement succeeds; 'raise' fails the statement.
--
-- The model check: the settings handed to _embed_remote carry the
-- vectorizer's model and fingerprint, so a server that now serves another
-- model is refused (its vectors would not be comparable) instead of written.
-- The database's Python runs no vecplug plugins: vecplug_before_ingest hooks
-- run in async mode (the worker) only.

CREATE OR REPLACE FUNCTION vecplug._embed_changed() RETURNS trigger
LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
MAX_TEXTS = 256            # per request (the server takes up to 2,048)
MAX_CHARS = 4_000_000      # per request (the server refuses bodies over 8 MiB)

plans = SD.setdefault("plans", {})
if "vectorizer" not in plans:
    plans["vectorizer"] = plpy.prepare(
        "SELECT v.id, v.name, v.source::oid AS source, v.model, v.model_fingerprint, v.dimensions, v.storage, "
        "v.on_error, v.key_columns, v.key_types, v.embedding_column, "
        "quote_ident(v.schema_name) || '.' || quote_ident(v.table_name) AS table_sql, "
        "vecplug._changed_rows_query(v, $2) AS changed_query, vecplug._vector_schema() AS vector_schema, "
        "vecplug._server_settings() || jsonb_build_object('model', v.model, 'model_fingerprint', v.model_fingerprint) "
        "AS settings FROM vecplug._trigger_vectorizer($1, $3, $4) AS v",
        ["text", "text", "oid", "name"])
    plans["embed"] = plpy.prepare(
        "SELECT vecplug._embed_remote($1, 'document', $2, $3, $4) AS vectors", ["text[]", "text", "integer", "jsonb"])
    plans["activity"] = plpy.prepare(
        "INSERT INTO vecplug.activity (vectorizer_id, embedded, error) VALUES ($1, $2, $3)",
        ["integer", "bigint", "text"])

v = plpy.execute(plans["vectorizer"], [TD["args"][0], TD["event"], TD["relid"], TD["name"]])[0]
changed = plpy.execute(v["changed_query"])
if len(changed) == 0:
    return None


def chunks(rows):
    chunk, chars = [], 0
    for row in rows:
        if chunk and (len(chunk) >= MAX_TEXTS or chars + len(row["body"]) > MAX_CHARS):
            yield chunk
            chunk, chars = [], 0
        chunk.append(row)
        chars += len(row["body"])
    if chunk:
        yield chunk


def quote(name):
    return plpy.quote_ident(name)


try:
    vectors = []
    for chunk in chunks(changed):
        vectors += plpy.execute(plans["embed"], [[row["body"] for row in chunk], v["model"], v["dimensions"],
                                                 v["settings"]])[0]["vectors"]
except plpy.SPIError as error:
    if v["on_error"] == "raise":
        raise
    plpy.execute(f"INSERT INTO vecplug.queue (vectorizer_id, pk) SELECT {int(v['id'])}, changed.pk "
                 f"FROM ({v['changed_query']}) AS changed")
    plpy.execute(f"SELECT pg_notify('vecplug_queue', '{int(v['id'])}')")
    plpy.execute(plans["activity"], [v["id"], 0, str(error)])
    plpy.notice(f"vecplug: could not embed {len(changed)} rows of {v['name']} now ({error}); they are queued "
                "for `vecplug pg worker`", hint="Start the embedding server, and a worker, to embed them.")
    return None

key_count = len(v["key_columns"])
write_key = ("write", v["id"], v["table_sql"], v["embedding_column"], tuple(v["key_columns"]),
             tuple(v["key_types"]), v["vector_schema"], v["storage"])
if write_key not in plans:
    keys = ", ".join(f"k{index}" for index in range(key_count))
    arrays = ", ".join(f"${index + 1}::text[]" for index in range(key_count + 1))
    match = " AND ".join(f"t.{quote(column)} = x.k{index}::{type_name}"
                         for index, (column, type_name) in enumerate(zip(v["key_columns"], v["key_types"])))
    plans[write_key] = plpy.prepare(
        f"UPDATE {v['table_sql']} AS t SET {quote(v['embedding_column'])} = "
        f"x.e::{quote(v['vector_schema'])}.{quote(v['storage'])} "
        f"FROM unnest({arrays}) AS x ({keys}, e) WHERE {match}", ["text[]"] * (key_count + 1))
columns = [[row["pk"][index] for row in changed] for index in range(key_count)]
plpy.execute(plans[write_key], columns + [vectors])
plpy.execute(plans["activity"], [v["id"], len(changed), None])
return None
$python$;
REVOKE ALL ON FUNCTION vecplug._embed_changed() FROM PUBLIC;
