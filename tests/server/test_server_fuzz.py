"""Property-based fuzzing of ``vecplug serve`` from its own OpenAPI schema (schemathesis + hypothesis).

For every operation the served schema describes, schemathesis generates
requests that fit the schema and requests that break it; every answer is
checked against the schema (status codes, content types, bodies), and no
input may cause a 5xx. (schemathesis' pytest plugin does not run under
pytest 9, so the strategies are driven by hypothesis directly.)
"""
from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode

from test_server import call


# A refusal may also be 413 (too many texts, a body too large: TEI's own status for them).
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]


@pytest.fixture(scope="module")
def served_schema(tiny_server):
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}})
    return schemathesis.openapi.from_url(tiny_server.url + "/openapi.json", config=config)


def operations(schema):
    found = [result.ok() for result in schema.get_all_operations()]
    assert {f"{operation.method.upper()} {operation.path}" for operation in found} >= {
        "POST /v1/embeddings", "GET /v1/models", "POST /embed", "POST /embed_all", "POST /embed_chunks", "GET /info",
        "GET /health", "GET /metrics"}
    return found


def schema_can_state(case) -> bool:
    """False for a body that breaks the one rule JSON Schema cannot state: /embed_chunks' overlap_tokens below
    chunk_tokens (two fields compared; such a body is a 422 naming both, see test_server_chunks)."""
    body = case.body
    if case.path != "/embed_chunks" or not isinstance(body, dict):
        return True
    chunk_tokens, overlap_tokens = body.get("chunk_tokens", 512), body.get("overlap_tokens", 0)
    numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool)
                  for value in (chunk_tokens, overlap_tokens))
    return not numbers or overlap_tokens < chunk_tokens


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_breaks_the_server(served_schema, tiny_server, mode):
    for operation in operations(served_schema):
        if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to break in a GET without parameters
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=int(os.environ.get("SERVER_FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            if mode is GenerationMode.POSITIVE:
                assume(schema_can_state(case))
            case.call_and_validate(base_url=tiny_server.url)

        check()
    assert call(tiny_server.url, "/health")[0] == 200
