"""The OpenAPI schema: bodies the routes parse themselves, and the limits of the served model."""
from __future__ import annotations

from fastapi import FastAPI

from .engine import ModelHost
from .handling import prompt_names


def request_body(model) -> dict:
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_openapi_bodies(app: FastAPI, host: ModelHost, *models) -> None:
    """Routes parse bodies themselves; put the bodies' schemas where their ``$ref`` points.

    Once the model is loaded the schema also states the served model's limits
    (largest ``dimensions``, texts per request, prompt names), so it promises
    exactly what the server accepts; the fuzz test holds it to that.
    """
    build = app.openapi

    def openapi():
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        app.openapi_schema = None  # FastAPI cached it; keep it only once the served limits are in
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            found = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(found.pop("$defs", {}))
            components[model.__name__] = found
        if host.ready:
            for model in models:
                _state_served_limits(components[model.__name__], host)
            app.openapi_schema = schema
        return schema

    app.openapi = openapi


def _state_served_limits(request_schema: dict, host: ModelHost) -> None:
    """Limits by field, the same in every request model: a list of texts holds at most the per-request limit,
    ``dimensions`` at most the model's, ``prompt_name`` its names; ``/decode``'s ``ids`` see ``_state_token_ids``."""
    for field, schema in request_schema["properties"].items():
        if field == "ids":
            _state_token_ids(schema, host)
            continue
        for option in [schema, *schema.get("anyOf", [])]:
            if option.get("type") == "array":
                option["maxItems"] = host.config.max_request_texts
            elif field == "dimensions" and option.get("type") == "integer":
                option["maximum"] = host.spec.dimensions
            elif field == "prompt_name" and option.get("type") == "string":
                option["enum"] = prompt_names(host)


def _state_token_ids(schema: dict, host: ModelHost) -> None:
    """``/decode``'s ``ids``: a list of sequences holds at most the per-request limit (a single flat sequence
    has none), and each id is below the model's vocabulary size."""
    tokenizer = getattr(host.model, "tokenizer", None)
    vocabulary = tokenizer.get_vocab_size() if hasattr(tokenizer, "get_vocab_size") else None

    def bound_ids(node: dict) -> None:
        if node.get("type") == "integer" and vocabulary:
            node["maximum"] = vocabulary - 1
        for child in [node.get("items"), *node.get("anyOf", [])]:
            if isinstance(child, dict):
                bound_ids(child)

    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "array" and option.get("items", {}).get("type") == "array":
            option["maxItems"] = host.config.max_request_texts
        bound_ids(option)
