-- vecplug query functions: SQL that embeds text through `vecplug serve`.
-- Needs plpython3u (so a superuser installs it) and pgvector. Repeatable.
--
--   SELECT id FROM docs ORDER BY embedding <=> vecplug.embed_query('how do I ...') LIMIT 10;
--
-- The functions are STABLE: within a statement the same text gives the same
-- vector, so the planner may use the expression as an index scan key, which
-- is evaluated once per scan: one HTTP request per query, whatever the row
-- count. COST 10000 (100 is the default) tells the planner a call is an HTTP
-- round trip, so it prefers plans that call it once. They are PARALLEL SAFE: they change nothing and keep no state a
-- parallel worker would have to share (each process has its own small
-- cache, so a parallel plan costs at most one request per worker; the HNSW
-- scan is never parallel). The Python code calls no SPI: PL/Python runs
-- every plpy.execute in a subtransaction, which PostgreSQL 15 forbids in
-- parallel mode; the settings come in as an argument instead.
--
-- Where the text goes is read from vecplug.settings by SECURITY DEFINER
-- wrappers with a pinned search_path; the Python function itself is not
-- callable by PUBLIC, so nobody can hand it another URL.

CREATE OR REPLACE FUNCTION vecplug._embed_remote(
    texts text[], kind text, model text, dimensions integer, settings jsonb
) RETURNS vector[]
LANGUAGE plpython3u STABLE PARALLEL SAFE COST 10000
SET search_path = pg_catalog, pg_temp
AS $python$
import array
import base64
import hashlib
import http.client
import json
import math
import socket
import sys
import urllib.parse
from collections import OrderedDict

CACHED_VECTORS = 256  # per process: repeated query texts cost no request
MAX_TEXTS = 256  # per request: the server takes up to 2,048 (HTTP 413 beyond)
MAX_BODY_BYTES = 4 * 1024 * 1024  # of JSON text per request: the server refuses bodies over 8 MiB

if texts is None:
    return None
if kind not in ("query", "document"):
    plpy.error(f"vecplug: kind must be 'query' or 'document', not {kind!r}", sqlstate="22023")
if all(text is None for text in texts):
    return list(texts)
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


def call(method, path, body=None):
    """(status, decoded JSON or None) from the server; a plpy.error naming it when unreachable or slow."""
    connection_type = http.client.HTTPSConnection if location.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(location.hostname, location.port, timeout=connect_timeout)
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    stage = "connect to"
    try:
        connection.connect()
        connection.sock.settimeout(read_timeout)
        stage = "get an answer from"
        connection.request(method, location.path + path, body=data, headers=headers)
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
        message = decoded.get("error", {}).get("message") if isinstance(decoded, dict) else None
        message = message or payload[:300].decode("utf-8", "replace")
        hints = {401: "The API key in vecplug.settings is missing or wrong: re-run vecplug pg install with "
                      "$VECPLUG_API_KEY or --api-key-file.",
                 413: f"vecplug sends at most {MAX_TEXTS} texts and {MAX_BODY_BYTES // 2**20} MiB per request; a "
                      "single text larger than the server's --max-request-bytes cannot be sent: shorten it, or "
                      "raise the server's --max-request-bytes and --max-queue-texts if they were lowered."}
        hints[403] = hints[401]
        # no hint is no hint argument: PL/Python prints hint=None as "HINT:  None"
        extra = {"hint": hints[response.status]} if response.status in hints else {}
        plpy.error(f"vecplug: the embedding server at {url} answered {method} {path} with HTTP "
                   f"{response.status}: {message}", sqlstate="38000", **extra)
    if not isinstance(decoded, dict):
        plpy.error(f"vecplug: the embedding server at {url} sent no JSON object for {method} {path}",
                   hint="Is this URL a `vecplug serve`?", sqlstate="38000")
    return decoded


def served_model():
    """The server's description of the wanted model, asked once per session and cached."""
    cache = SD.setdefault("models", {})
    key = (url, api_key, model or "")
    if key in cache:
        return cache[key]
    listing = call("GET", "/v1/models").get("data") or []
    described = [entry for entry in listing if isinstance(entry, dict) and isinstance(entry.get("vecplug"), dict)]
    names = [entry.get("id") for entry in described]
    if model is None:
        chosen = described[:1] if len(described) == 1 else []
        if not chosen:
            plpy.error(f"vecplug: the embedding server at {url} serves {len(described)} models: {names}",
                       hint="Name one with model => '...'.", sqlstate="22023")
    else:
        chosen = [entry for entry in described if model == entry.get("id") or model == entry["vecplug"].get("name")
                  or model in (entry["vecplug"].get("aliases") or [])]
        if not chosen:
            plpy.error(f"vecplug: the embedding server at {url} does not serve model {model!r}",
                       detail=f"It serves: {', '.join(map(str, names)) or 'nothing'}.",
                       hint="Use one of those names, or start a server with that model.", sqlstate="22023")
    entry = chosen[0]
    spec = entry["vecplug"]
    recorded = config.get("model_fingerprint")
    is_installed_model = model is None or config.get("model") in (model, spec.get("name"))
    if recorded and is_installed_model and spec.get("fingerprint") != recorded:
        plpy.error(f"vecplug: the embedding server at {url} now serves {entry.get('id')!r} with fingerprint "
                   f"{spec.get('fingerprint')}, not the model vecplug was installed with "
                   f"({config.get('model')!r}, fingerprint {recorded})",
                   detail="Its vectors would not be comparable with the ones already stored.",
                   hint="Start the server with the installed model, or re-run vecplug pg install --server-url "
                        "... to accept the new one (and re-embed stored vectors).", sqlstate="22023")
    info = {"id": entry.get("id"), "dimensions": int(spec.get("dimensions") or 0),
            "matryoshka_dims": [int(d) for d in spec.get("matryoshka_dims") or []],
            "any_dimensions": bool(spec.get("any_dimensions")),
            "fingerprint": spec.get("fingerprint") or ""}
    cache[key] = info
    return info


def to_vector_text(blob, expected):
    values = array.array("f")
    values.frombytes(base64.b64decode(blob))
    if sys.byteorder != "little":
        values.byteswap()
    if len(values) != expected or not all(map(math.isfinite, values)):
        plpy.error(f"vecplug: the embedding server at {url} sent a vector of {len(values)} numbers "
                   f"(finite: {all(map(math.isfinite, values))}), expected {expected} finite ones",
                   hint="Is this URL a `vecplug serve` of the installed version?", sqlstate="38000")
    return "[" + ",".join("%.9g" % value for value in values) + "]"  # 9 digits: float32 exact


def requests(items):
    """``items`` ((key, JSON text) pairs) in order, cut into requests under the server's limits.

    The server refuses more than 2,048 texts or 8 MiB of body (HTTP 413); a
    request stays at MAX_TEXTS texts and MAX_BODY_BYTES of JSON text (the
    encoded size, so non-ASCII text counts what it weighs), so the README's
    embed_documents(array_agg(...)) of a whole table costs a few requests,
    never a 413. A single text over the limit goes alone (the server names it).
    """
    chunk, size = [], 0
    for item in items:
        if chunk and (len(chunk) >= MAX_TEXTS or size + len(item[1]) > MAX_BODY_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item[1]) + 1
    if chunk:
        yield chunk


def body_of(head, encoded_texts):
    """The request's JSON body from texts already encoded once (their size decided the cut)."""
    return json.dumps(head, ensure_ascii=False).encode()[:-1] + b', "input": [' + b",".join(encoded_texts) + b"]}"


info = served_model()
size = info["dimensions"] if dimensions is None else dimensions
if (dimensions is not None and dimensions != info["dimensions"] and dimensions not in info["matryoshka_dims"]
        and not (info["any_dimensions"] and 0 < dimensions < info["dimensions"])):
    plpy.error(f"vecplug: model {info['id']!r} cannot give {dimensions} dimensions",
               detail=f"It gives {info['dimensions']}, or cuts to {info['matryoshka_dims'] or 'no smaller size'}.",
               sqlstate="22023")

vectors = SD.setdefault("vectors", OrderedDict())
prefix = (url, api_key, info["id"], info["fingerprint"], kind, size)
keys = [None if text is None else prefix + (hashlib.sha256(text.encode()).digest(),) for text in texts]
found = {key: vectors[key] for key in keys if key is not None and key in vectors}  # this call's vectors
wanted = {}  # key -> the text's JSON, each distinct missing text once
for key, text in zip(keys, texts):
    if key is not None and key not in found and key not in wanted:
        wanted[key] = json.dumps(text, ensure_ascii=False).encode()
head = {"model": info["id"], "input_type": kind, "encoding_format": "base64"}
if dimensions is not None:
    head["dimensions"] = dimensions
for chunk in requests(list(wanted.items())):
    answer = call("POST", "/v1/embeddings", body_of(head, [encoded for _, encoded in chunk]))
    data = sorted((item for item in answer.get("data") or [] if isinstance(item, dict)),
                  key=lambda item: item.get("index", -1))
    if [item.get("index") for item in data] != list(range(len(chunk))):
        plpy.error(f"vecplug: the embedding server at {url} answered {len(data)} embeddings for "
                   f"{len(chunk)} texts", sqlstate="38000")
    for (key, _), item in zip(chunk, data):
        found[key] = to_vector_text(item.get("embedding", ""), size)
result = [None if key is None else found[key] for key in keys]
for key in keys:  # the cache keeps the last CACHED_VECTORS texts asked for, this call's last ones included
    if key is not None:
        vectors[key] = found[key]
        vectors.move_to_end(key)
while len(vectors) > CACHED_VECTORS:
    vectors.popitem(last=False)
return result
$python$;
REVOKE ALL ON FUNCTION vecplug._embed_remote(text[], text, text, integer, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION vecplug.embed_query(query text, model text DEFAULT NULL, dimensions integer DEFAULT NULL)
RETURNS vector
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER COST 10000
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN query IS NOT NULL THEN
        (vecplug._embed_remote(ARRAY[query], 'query', model, dimensions, vecplug._server_settings()))[1]
    END
$$;
COMMENT ON FUNCTION vecplug.embed_query(text, text, integer) IS
    'The query''s embedding (query prompt applied) from the server set at install; NULL for NULL';

CREATE OR REPLACE FUNCTION vecplug.embed_document(document text, model text DEFAULT NULL, dimensions integer DEFAULT NULL)
RETURNS vector
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER COST 10000
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN document IS NOT NULL THEN
        (vecplug._embed_remote(ARRAY[document], 'document', model, dimensions, vecplug._server_settings()))[1]
    END
$$;
COMMENT ON FUNCTION vecplug.embed_document(text, text, integer) IS
    'The document''s embedding (document prompt applied) from the server set at install; NULL for NULL';

CREATE OR REPLACE FUNCTION vecplug.embed_documents(documents text[], model text DEFAULT NULL, dimensions integer DEFAULT NULL)
RETURNS vector[]
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER COST 10000
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT vecplug._embed_remote(documents, 'document', model, dimensions, vecplug._server_settings())
$$;
COMMENT ON FUNCTION vecplug.embed_documents(text[], text, integer) IS
    'The documents'' embeddings, in order; NULL elements stay NULL (requests of up to 256 texts and 4 MiB)';
