-- The sync mode of chunked vectorizers (create_vectorizer(..., chunk_tokens
-- => N, mode => 'sync')): the statement that writes a row cuts its text into
-- passages through the server's POST /embed_chunks and writes them into the
-- destination table, in the writer's transaction, so after COMMIT the row's
-- chunks are there. Needs plpython3u. Repeatable.
--
-- Who runs what (as the sync mode of single vectors, query/20_sync.sql):
--   vecplug._sync_chunks            the AFTER trigger, as the writing role (SECURITY INVOKER): reads
--                                   the changed rows from the statement's transition tables (only the
--                                   trigger function itself sees them), deletes the rows' old chunks
--                                   and inserts the new ones. A writer without rights on the
--                                   destination gets PostgreSQL's permission error naming it, and the
--                                   destination's own triggers run as that writer.
--   vecplug._chunks_for_vectorizer  SECURITY DEFINER: only asks the server (it reads the server's
--                                   address and key) and writes vecplug's own activity log. It is
--                                   given texts and returns spans and vectors; it touches no table of
--                                   the user's.
--   vecplug._embed_chunks_remote    plpython3u, callable by vecplug's owner only: the HTTP call.
--
-- With a format template the spans are of the bare text, and what is
-- embedded is the template filled with each chunk and the row's columns,
-- as the worker does (vecplug_pgvector.chunks): /embed_chunks plans the
-- spans (its vectors of the bare chunks are not used: the server has no
-- templates), then /v1/embeddings embeds the filled passages. Late chunking
-- takes no format (create_vectorizer refuses it).
--
-- One request per statement on a plain table (per row on a partitioned
-- one, whose triggers are per row). If the server cannot embed, on_error
-- decides, as for single vectors: 'queue' (default) queues the statement's
-- rows for `vecplug pg worker` (their old chunks answer until it replaces
-- them, as in async mode), one NOTICE says so, and the rest of the
-- statement does not wait on the server again; 'raise' fails the statement.
-- The server must still serve the vectorizer's model (the fingerprint it
-- answers with is checked), else that is a failure too.

-- The chunks of `texts` (NULL elements: none) from the server's POST /embed_chunks: parallel arrays,
-- one element per chunk, text_numbers[i] the 1-based position of its text in `texts`; embeddings
-- as pgvector's text. `fingerprint`: the vectorizer's model, which the answer must come from.
CREATE OR REPLACE FUNCTION vecplug._embed_chunks_remote(
    texts text[], chunk_tokens integer, overlap_tokens integer, late boolean, dimensions integer,
    fingerprint text, settings jsonb,
    OUT text_numbers integer[], OUT chunk_indexes integer[], OUT chunk_starts integer[], OUT chunk_ends integer[],
    OUT embeddings text[], OUT truncated integer
)
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
import http.client
import json
import math
import socket
import urllib.parse

MAX_TEXTS = 64  # per request (the server takes up to 2,048): a request's chunks stay a few MiB of JSON
MAX_BODY_BYTES = 4 * 1024 * 1024  # of JSON text per request: the server refuses bodies over 8 MiB

config = json.loads(settings)
url = (config.get("server_url") or "").rstrip("/")
location = urllib.parse.urlsplit(url)
install_hint = ("As the role that installed vecplug, run: vecplug pg install --dsn ... --server-url URL "
                "(or UPDATE vecplug.settings SET value = ... WHERE name = 'server_url').")
if location.scheme not in ("http", "https") or not location.hostname:
    if not url:
        plpy.error("vecplug: no embedding server is configured", hint=install_hint, sqlstate="38000")
    plpy.error(f"vecplug: the server_url setting {url!r} is not an http(s) URL", hint=install_hint,
               sqlstate="38000")


def seconds(name, default):
    raw = config.get(name) or default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        plpy.error(f"vecplug: the {name} setting {raw!r} is not a number of seconds between 0 and 3600",
                   hint=install_hint, sqlstate="38000")
    return value


connect_timeout = seconds("connect_timeout", "5")
read_timeout = seconds("read_timeout", "60")
api_key = config.get("api_key") or ""


def post(body):
    """(headers, decoded JSON) of POST /embed_chunks; a plpy.error naming the server when it cannot answer."""
    connection_type = http.client.HTTPSConnection if location.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(location.hostname, location.port, timeout=connect_timeout)
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    stage = "connect to"
    try:
        connection.connect()
        connection.sock.settimeout(read_timeout)
        stage = "get an answer from"
        connection.request("POST", location.path + "/embed_chunks", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
    except socket.timeout:
        limit = connect_timeout if stage == "connect to" else read_timeout
        plpy.error(f"vecplug: could not {stage} the embedding server at {url} within {limit:g} s",
                   hint="Check that `vecplug serve` runs there and is not overloaded; the limits are the "
                        "connect_timeout and read_timeout settings.", sqlstate="38000")
    except (OSError, http.client.HTTPException) as error:
        plpy.error(f"vecplug: could not {stage} the embedding server at {url}: {error}",
                   hint="Start it (vecplug serve --model MODEL --port PORT) or point vecplug at a running "
                        "one: " + install_hint, sqlstate="38000")
    finally:
        connection.close()
    try:
        decoded = json.loads(payload) if payload else None
    except ValueError:
        decoded = None
    if response.status != 200:
        message = decoded.get("error") if isinstance(decoded, dict) else None  # TEI's {"error", "error_type"}
        if isinstance(message, dict):
            message = message.get("message")
        message = message or payload[:300].decode("utf-8", "replace")
        hints = {401: "The API key in vecplug.settings is missing or wrong: re-run vecplug pg install with "
                      "$VECPLUG_API_KEY or --api-key-file.",
                 404: "The server answers no POST /embed_chunks: run a vecplug serve of this version.",
                 501: "Serve a ModernBERT model: chunking needs a model that tells where its tokens are."}
        hints[403] = hints[401]
        extra = {"hint": hints[response.status]} if response.status in hints else {}
        plpy.error(f"vecplug: the embedding server at {url} answered POST /embed_chunks with HTTP "
                   f"{response.status}: {message}", sqlstate="38000", **extra)
    served = response.getheader("X-Vecplug-Fingerprint")
    if fingerprint and served != fingerprint:
        plpy.error(f"vecplug: the embedding server at {url} now serves a model with fingerprint {served}, not "
                   f"this vectorizer's ({fingerprint})",
                   detail="Its vectors would not be comparable with the chunks already stored.",
                   hint="Start the server with the vectorizer's model, or re-embed (vecplug pg reembed).",
                   sqlstate="22023")
    if not isinstance(decoded, list):
        plpy.error(f"vecplug: the embedding server at {url} sent no JSON list for POST /embed_chunks",
                   hint="Is this URL a `vecplug serve`?", sqlstate="38000")
    return response, decoded


def requests(items):
    """(position, JSON text) pairs cut into requests of at most MAX_TEXTS texts and MAX_BODY_BYTES."""
    chunk, size = [], 0
    for item in items:
        if chunk and (len(chunk) >= MAX_TEXTS or size + len(item[1]) > MAX_BODY_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item[1]) + 1
    if chunk:
        yield chunk


def vector_text(values):
    if not isinstance(values, list) or len(values) != dimensions or not all(
            isinstance(value, (int, float)) and math.isfinite(value) for value in values):
        plpy.error(f"vecplug: the embedding server at {url} sent a chunk vector that is not {dimensions} finite "
                   "numbers", hint="Is this URL a `vecplug serve` of the installed version?", sqlstate="38000")
    return "[" + ",".join("%.9g" % value for value in values) + "]"  # 9 digits: float32 exact


head = {"chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens, "late": bool(late), "dimensions": dimensions}
head_bytes = json.dumps(head).encode()[:-1]
result = {"text_numbers": [], "chunk_indexes": [], "chunk_starts": [], "chunk_ends": [], "embeddings": [],
          "truncated": 0}
wanted = [(number, json.dumps(text, ensure_ascii=False).encode())
          for number, text in enumerate(texts or [], start=1) if text is not None]
for batch in requests(wanted):
    response, answer = post(head_bytes + b', "inputs": [' + b",".join(encoded for _, encoded in batch) + b"]}")
    if len(answer) != len(batch):
        plpy.error(f"vecplug: the embedding server at {url} answered {len(answer)} entries for {len(batch)} texts",
                   sqlstate="38000")
    result["truncated"] += int(response.getheader("X-Vecplug-Truncated") or 0)
    for (number, _), entry in zip(batch, answer):
        spans = entry.get("spans") if isinstance(entry, dict) else None
        vectors = entry.get("embeddings") if isinstance(entry, dict) else None
        length = len(texts[number - 1])
        if not isinstance(spans, list) or not isinstance(vectors, list) or len(spans) != len(vectors) or not all(
                isinstance(span, list) and len(span) == 2 and all(isinstance(value, int) for value in span)
                and 0 <= span[0] < span[1] <= length for span in spans):
            plpy.error(f"vecplug: the embedding server at {url} sent chunks that do not fit text {number}",
                       hint="Is this URL a `vecplug serve` of the installed version?", sqlstate="38000")
        for index, ((start, end), values) in enumerate(zip(spans, vectors)):
            result["text_numbers"].append(number)
            result["chunk_indexes"].append(index)
            result["chunk_starts"].append(start)
            result["chunk_ends"].append(end)
            result["embeddings"].append(vector_text(values))
return result
$python$;
REVOKE ALL ON FUNCTION vecplug._embed_chunks_remote(text[], integer, integer, boolean, integer, text, jsonb) FROM PUBLIC;

-- The chunks of a chunked sync vectorizer's texts, with its settings and model: what
-- vecplug._embed_chunks_remote gives, with a format the vectors of the filled passages instead
-- (format_values[i]: text i's values for the template, vecplug._fill_format's). What it embeds is
-- counted in vecplug.status (texts); when the server cannot embed them, a vectorizer with on_error
-- 'raise' raises, one with 'queue' returns the error instead (and logs it in vecplug.status).
-- Runs as vecplug's owner: it reads vecplug.settings, and writes vecplug.activity, nothing else.
CREATE OR REPLACE FUNCTION vecplug._chunks_for_vectorizer(
    vectorizer_id integer, texts text[], format_values jsonb[],
    OUT text_numbers integer[], OUT chunk_indexes integer[], OUT chunk_starts integer[], OUT chunk_ends integer[],
    OUT embeddings text[], OUT error text
)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v vecplug.vectorizers;
    settings jsonb;
    truncated integer;
    passages text[];
BEGIN
    SELECT * INTO STRICT v FROM vecplug.vectorizers WHERE id = vectorizer_id;
    IF v.destination IS NULL THEN
        RAISE EXCEPTION 'vecplug: vectorizer % does not chunk its texts', vectorizer_id USING ERRCODE = '22023';
    END IF;
    settings := vecplug._server_settings() || jsonb_build_object('model', v.model, 'model_fingerprint',
                                                                  v.model_fingerprint);
    BEGIN
        SELECT r.text_numbers, r.chunk_indexes, r.chunk_starts, r.chunk_ends, r.embeddings, r.truncated
        INTO text_numbers, chunk_indexes, chunk_starts, chunk_ends, embeddings, truncated
        FROM vecplug._embed_chunks_remote(texts, v.chunk_tokens, v.chunk_overlap, v.late_chunking, v.dimensions,
                                          v.model_fingerprint, settings) AS r;
        IF v.format IS NOT NULL AND cardinality(text_numbers) > 0 THEN  -- embed the filled passages instead
            SELECT array_agg(vecplug._fill_format(v.format, substr(texts[c.t], c.s + 1, c.e - c.s), format_values[c.t])
                             ORDER BY c.position)
            INTO passages
            FROM unnest(text_numbers, chunk_starts, chunk_ends) WITH ORDINALITY AS c (t, s, e, position);
            embeddings := vecplug._embed_remote(passages, 'document', v.model, v.dimensions, settings)::text[];
        END IF;
    EXCEPTION WHEN OTHERS THEN
        IF v.on_error = 'raise' THEN
            RAISE;
        END IF;
        error := SQLERRM;
        text_numbers := NULL;
        chunk_indexes := NULL;
        chunk_starts := NULL;
        chunk_ends := NULL;
        embeddings := NULL;
        INSERT INTO vecplug.activity (vectorizer_id, error) VALUES (v.id, left(error, 2000));
        RETURN;
    END;
    IF v.mode = 'sync' THEN  -- what vecplug.status counts as embedded: source rows; the log is folded now and then
        INSERT INTO vecplug.activity (vectorizer_id, embedded, truncated)
        VALUES (v.id, (SELECT count(*) FROM unnest(texts) AS t WHERE t IS NOT NULL), coalesce(truncated, 0));
        IF random() < 0.001 THEN
            PERFORM vecplug.fold_activity();
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION vecplug._chunks_for_vectorizer(integer, text[], jsonb[]) IS
    'The chunks (spans, vectors) of texts for a chunked sync vectorizer (what its trigger calls)';
GRANT EXECUTE ON FUNCTION vecplug._chunks_for_vectorizer(integer, text[], jsonb[]) TO PUBLIC;

-- AFTER INSERT / UPDATE of a chunked sync vectorizer's table (per statement; per row on a
-- partitioned table, where the trigger's WHEN chose the row): the changed rows' chunks replaced
-- now, as the writing role. Keys travel as text under the pinned settings below and are cast back
-- to the destination's key types (as the worker reads them).
CREATE OR REPLACE FUNCTION vecplug._sync_chunks() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'postgres'
SET timezone = 'UTC'
SET extra_float_digits = 3
SET bytea_output = 'hex'
SET lc_monetary = 'C'
AS $$
DECLARE
    v vecplug.vectorizer_columns := vecplug._trigger_vectorizer(TG_ARGV[0], TG_RELID, TG_NAME);
    problem text := vecplug._vectorizer_problem(v);
    this_statement text := statement_timestamp()::text;  -- the marker is transaction-local: this names the statement
    rows_query text;
    d record;
    keys text[];  -- two-dimensional: one line per row, as vecplug.queued_statements.keys
    bodies text[];
    values_by_row jsonb[];
    chunks record;
    asked boolean := false;  -- chunks is set (some text was not NULL)
    failure text;
    key_match text;
    key_values text;
    vector_type text;
    inserted bigint;
BEGIN
    IF problem IS NOT NULL THEN
        PERFORM vecplug._stand_aside(v, problem);
        RETURN NULL;
    END IF;
    rows_query := format('SELECT array_agg(r.pk), array_agg(r.body), array_agg(r.format_values) FROM (%s) AS r',
                         vecplug._chunk_rows_query(v, CASE TG_LEVEL WHEN 'ROW' THEN 'ROW' ELSE TG_OP END));
    IF TG_LEVEL = 'ROW' THEN
        EXECUTE rows_query INTO keys, bodies, values_by_row USING v.id, v.source::oid, NEW;
    ELSE
        EXECUTE rows_query INTO keys, bodies, values_by_row;
    END IF;
    IF keys IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT FROM unnest(bodies) AS b WHERE b IS NOT NULL) THEN
        IF current_setting('vecplug.sync_failed_statement', true) IS DISTINCT FROM this_statement THEN
            SELECT * INTO chunks FROM vecplug._chunks_for_vectorizer(v.id, bodies, values_by_row) AS c;
            asked := true;
            failure := chunks.error;
        ELSE
            failure := 'the server failed earlier in this statement';
        END IF;
        IF failure IS NOT NULL THEN  -- on_error 'queue' (with 'raise' the call raised): as in async mode
            IF current_setting('vecplug.sync_failed_statement', true) IS DISTINCT FROM this_statement THEN
                PERFORM set_config('vecplug.sync_failed_statement', this_statement, true);
                RAISE NOTICE 'vecplug: could not embed rows of % now (%); they are queued for `vecplug pg worker`',
                    v.name, failure USING HINT = 'Start the embedding server, and a worker, to embed them.';
            END IF;
            IF TG_LEVEL = 'ROW' THEN
                INSERT INTO vecplug.queue (vectorizer_id, source, pk)
                VALUES (v.id, v.source::oid, ARRAY(SELECT unnest(keys)));
            ELSE
                INSERT INTO vecplug.queued_statements (vectorizer_id, source, keys) VALUES (v.id, v.source::oid, keys);
            END IF;
            PERFORM pg_notify('vecplug_queue', v.id::text);
            RETURN NULL;
        END IF;
    END IF;
    d := vecplug._destination(v);
    SELECT string_agg(format('d.%I = CAST($1[k.line][%s] AS %s)', dk, position, type_name), ' AND '),
           string_agg(format('CAST($1[c.t][%s] AS %s)', position, type_name), ', ' ORDER BY position)
    INTO key_match, key_values
    FROM unnest(d.key_columns, v.key_types) WITH ORDINALITY AS k (dk, type_name, position);
    IF TG_OP = 'UPDATE' THEN  -- an INSERTed row has no chunks yet (a deleted row took its own with it)
        EXECUTE format('DELETE FROM %I.%I d USING generate_series(1, array_length($1, 1)) AS k (line) WHERE %s',
                       d.schema_name, d.table_name, key_match) USING keys;
    END IF;
    IF NOT asked THEN
        RETURN NULL;  -- every text was NULL: their old chunks went, no new ones
    END IF;
    IF cardinality(chunks.text_numbers) > 0 THEN
        SELECT format_type(a.atttypid, a.atttypmod) INTO vector_type FROM pg_attribute a
        WHERE a.attrelid = v.destination AND a.attname = v.embedding_column;
        EXECUTE format('INSERT INTO %I.%I (%s, chunk_index, chunk_start, chunk_end, chunk, %I) '
                       'SELECT %s, c.i, c.s, c.e, substr($2[c.t], c.s + 1, c.e - c.s), CAST(c.v AS %s) '
                       'FROM unnest($3, $4, $5, $6, $7) AS c (t, i, s, e, v)',
                       d.schema_name, d.table_name,
                       (SELECT string_agg(quote_ident(k), ', ') FROM unnest(d.key_columns) AS k),
                       v.embedding_column, key_values, vector_type)
            USING keys, bodies, chunks.text_numbers, chunks.chunk_indexes, chunks.chunk_starts, chunks.chunk_ends,
                  chunks.embeddings;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted <> cardinality(chunks.text_numbers) THEN  -- as the worker (RowsNotWritten)
            RAISE EXCEPTION 'vecplug: % of % chunks of % were not inserted: a BEFORE INSERT trigger, rule or policy '
                'of table %.% skipped them', cardinality(chunks.text_numbers) - inserted,
                cardinality(chunks.text_numbers), v.name, quote_ident(d.schema_name), quote_ident(d.table_name)
                USING ERRCODE = '55000';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION vecplug._sync_chunks() FROM PUBLIC;  -- only create_vectorizer attaches it
