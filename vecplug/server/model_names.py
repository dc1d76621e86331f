"""The model names ``/v1/embeddings`` accepts and ``/v1/models`` describes, ``:query``/``:document`` included.

Some clients can set nothing but a model name: LangChain's and LlamaIndex's
OpenAI classes, Milvus's OpenAI embedding provider. For them any name the
server accepts may end in ``:query`` or ``:document``, which picks the
prompt as ``input_type`` does; ``/v1/models`` says so in its description,
where such a client's user looks.
"""
from __future__ import annotations

from ..model import KINDS
from .engine import ModelHost
from .errors import APIError


def kind_in_model_name(host: ModelHost, name: str | None) -> str | None:
    """OpenAI's ``model`` field: absent, the served name or one of the model's names, any of them with
    ``:query`` or ``:document`` after it (for clients that can set nothing but a model name); the kind
    such a suffix asks for, None without one. Any other name is a 404."""
    names = host.accepted_names()
    if name is None or name in names:
        return None
    base, _, kind = name.rpartition(":")
    if base in names and kind in KINDS:
        return kind
    raise APIError(404, f"model {name!r} is not served here; this server serves {names[0]!r}"
                        + (f" (also accepted: {', '.join(map(repr, names[1:]))})" if names[1:] else "")
                        + ". Send one of those, with :query or :document after it to pick the prompt, or leave "
                          "model out.", code="model_not_found", param="model")


def embedding_kind(host: ModelHost, body) -> str:
    """The kind a ``/v1/embeddings`` body asks for: the model name's suffix, else ``input_type``; both must agree."""
    kind = kind_in_model_name(host, body.model)
    if kind is None:
        return body.input_type
    if "input_type" in body.model_fields_set and body.input_type != kind:
        raise APIError(400, f"model {body.model!r} picks the {kind} prompt but input_type is "
                            f"{body.input_type!r}; send one of the two (or the same kind in both)",
                       param="input_type")
    return kind


def model_description(host: ModelHost) -> str:
    """What ``/v1/models`` says of the served model: how a client that sets only a model name picks the prompt."""
    spec, name = host.spec, host.served_name
    others = [other for other in host.accepted_names() if other != name]
    also = f" (also after {', '.join(others)})" if others else ""
    query, document = spec.prompt_for("query"), spec.prompt_for("document")
    if not (query or document):
        prompts = "This model has no prompts: queries and documents are embedded alike."
    else:
        prompts = (f"Queries get the prompt {query!r}, documents {document!r}; a text that already starts with "
                   "one of them gets none added.")
    return (f"{spec.description or name}, {spec.dimensions} dimensions. Embeds documents by default; model "
            f"\"{name}:query\" embeds search queries and \"{name}:document\" documents{also}, for clients that "
            f"can set only a model name (or send input_type). {prompts}")
