"""Request and response bodies: OpenAI's ``/v1/embeddings``, TEI's ``/embed`` and ``/embed_all``, ``/embed_chunks``.

Requests refuse unknown fields: a misspelt ``input_typ`` silently embedding
queries as documents is the kind of quiet error vecplug exists to prevent.
The fields real clients send (OpenAI's ``user``, TEI's
``truncation_direction``) are known. The shapes also make the server's
OpenAPI schema, which the fuzz test generates requests from.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator, model_validator

TextInput = Union[str, Annotated[list[str], Field(min_length=1)]]


def check_text_input(value, field: str):
    """A string or a non-empty list of strings; say which item is wrong and why."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError(f"{field} must be a string or a list of strings, got {json_type(value)}")
    if not value:
        raise ValueError(f"{field} is an empty list; send at least one text")
    for index, item in enumerate(value):
        if isinstance(item, str):
            continue
        if isinstance(item, (int, list)) and not isinstance(item, bool):
            raise ValueError(
                f"{field}[{index}] is {json_type(item)}: token-id input is not supported, "
                "send the text itself (the server tokenizes with the model's own tokenizer). LangChain's "
                "OpenAIEmbeddings sends token ids by default: pass check_embedding_ctx_length=False"
            )
        raise ValueError(f"{field}[{index}] is {json_type(item)}, expected a string")
    return value


def check_whole_number(value, field: str):
    """An integer, also written as 16.0 (JSON Schema's integer); never a string or a boolean."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{field} must be a whole number, got {json_type(value)} ({value!r:.40})")


def json_type(value) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class RequestBody(BaseModel):
    """What every request body shares: unknown fields refused, texts and ``dimensions`` checked alike.

    A route flavour's request model subclasses it; its text field is called
    ``input`` or ``inputs`` (add the name to ``_check_texts`` for another).
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("input", "inputs", mode="before", check_fields=False)
    @classmethod
    def _check_texts(cls, value, info: ValidationInfo):
        return check_text_input(value, info.field_name)

    @field_validator("dimensions", mode="before", check_fields=False)
    @classmethod
    def _check_dimensions(cls, value):
        return check_whole_number(value, "dimensions")


class EmbeddingRequest(RequestBody):
    """OpenAI's embeddings request, plus ``input_type`` (which prompt the server puts before each text)."""

    input: TextInput = Field(description="A text or a list of texts (at most the server's per-request limit).")
    model: str | None = Field(None, description="The served model's name or an alias, optionally with :query or "
                                                ":document after it (picks the prompt, as input_type does); omit "
                                                "for the served model.")
    dimensions: int | None = Field(None, ge=1, description="Matryoshka: keep the first N dimensions, re-normalised.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: each vector as little-endian float32 bytes, base64-encoded.")
    input_type: Literal["query", "document"] = Field(
        "document", description="query: the model's query prompt; document: its document prompt.")
    user: str | None = Field(None, description="Accepted for OpenAI compatibility; not used.")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "vecplug"
    description: str = Field(description="The model, and how to ask for queries or documents by model name.")
    vecplug: dict = Field(description="The model's spec: name, aliases, dimensions, matryoshka_dims, "
                                      "max_tokens, prompts, fingerprint.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbedRequest(RequestBody):
    """text-embeddings-inference's ``/embed`` request."""

    inputs: TextInput
    normalize: StrictBool = Field(
        True, description="false: the pooled vectors before the model's L2 normalisation (a model whose plugin "
                          "gives token states; Matryoshka cuts are then not re-normalised either).")
    truncate: StrictBool | None = Field(
        None, description="Cut texts longer than the model's max tokens (default); false refuses them with 413.")
    truncation_direction: Literal["right", "Right"] = Field(
        "right", description="Only right: texts keep their beginning.")
    prompt_name: str | None = Field(
        None, description="A prompt name of the model (query, document); default document.")
    dimensions: int | None = Field(None, ge=1)

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _check_direction(cls, value):
        return check_direction(value)


def check_direction(value):
    """TEI's ``truncation_direction``: only right (a text keeps its beginning)."""
    if isinstance(value, str) and value.lower() == "left":
        raise ValueError("truncation_direction=left is not supported: texts longer than the model's "
                         "max tokens keep their beginning. Leave it out or send right (in a Milvus "
                         "function: truncation_direction Right, or no such param).")
    return value


class EmbedAllRequest(RequestBody):
    """text-embeddings-inference's ``/embed_all`` request: every token's final hidden state."""

    inputs: TextInput
    truncate: StrictBool | None = Field(
        None, description="Cut texts longer than the model's max tokens (default); false refuses them with 413.")
    truncation_direction: Literal["right", "Right"] = Field(
        "right", description="Only right: texts keep their beginning.")
    prompt_name: str | None = Field(
        None, description="A prompt name of the model (query, document); default document.")

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _check_direction(cls, value):
        return check_direction(value)


def check_text_list(value, field: str):
    """A non-empty list of strings: a bare string is refused, since the answer has one entry per input."""
    if isinstance(value, str):
        raise ValueError(f"{field} must be a list of texts, not a single string: the answer has one entry per "
                         f"input; send [\"your text\"]")
    return check_text_input(value, field)


class EmbedChunksRequest(RequestBody):
    """vecplug's ``/embed_chunks``: each text as passages of at most ``chunk_tokens`` of its own tokens.

    The chunking rules are ``vecplug.chunking``'s, the same as
    ``model.embed_chunks`` in Python: chunks are embedded as documents (the
    document prompt is applied), ``late`` pools them from one pass over the
    whole text.
    """

    inputs: Annotated[list[str], Field(min_length=1)] = Field(
        description="A list of texts (at most the server's per-request limit); each gets one entry in the answer.")
    chunk_tokens: int = Field(512, ge=1, description="At most this many of the text's own tokens per chunk "
                                                     "(never the prompt or special tokens).")
    overlap_tokens: int = Field(0, ge=0, description="Tokens consecutive chunks share; less than chunk_tokens.")
    late: StrictBool = Field(False, description="Late chunking: embed each whole text once and pool every chunk "
                                                "from token states that saw all of it.")
    dimensions: int | None = Field(None, ge=1, description="Matryoshka: keep the first N dimensions, re-normalised.")

    @field_validator("inputs", mode="before")
    @classmethod
    def _check_texts(cls, value, info: ValidationInfo):
        return check_text_list(value, info.field_name)

    @field_validator("chunk_tokens", "overlap_tokens", mode="before")
    @classmethod
    def _check_counts(cls, value, info: ValidationInfo):
        return check_whole_number(value, info.field_name)

    @model_validator(mode="after")
    def _check_chunking(self):
        from ..chunking import check_chunking

        check_chunking(self.chunk_tokens, self.overlap_tokens)  # InvalidSettingError is a ValueError: a 400/422
        return self


class ChunkedText(BaseModel):
    """One input's chunks: ``spans[i]`` is ``[start, end)`` in the input's characters, ``embeddings[i]`` its vector."""

    spans: list[Annotated[list[int], Field(min_length=2, max_length=2)]]
    embeddings: list[list[float]]


class TokenizeRequest(RequestBody):
    """text-embeddings-inference's ``/tokenize``: each input's tokens as the model reads it."""

    inputs: TextInput
    add_special_tokens: StrictBool = Field(True, description="Include the special tokens the model adds ([CLS] ...).")
    prompt_name: str | None = Field(
        None, description="A prompt name of the model (query, document); default document, as /embed uses.")


class SimpleToken(BaseModel):
    """One token: its id, its text, and where it is in the prompted input (null for an added special token)."""

    id: int
    text: str
    special: bool
    start: int | None = Field(description="Character offset in the prompt followed by the input.")
    stop: int | None = Field(description="End (exclusive) of the token's characters.")


class DecodeRequest(RequestBody):
    """text-embeddings-inference's ``/decode``: token ids back to text."""

    ids: Union[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)],
               Annotated[list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]],
                         Field(min_length=1)]] = Field(
        description="One sequence of token ids, or a list of sequences; the answer has one text per sequence.")
    skip_special_tokens: StrictBool = Field(True, description="Leave special tokens ([CLS], [SEP] ...) out.")

    @field_validator("ids", mode="before")
    @classmethod
    def _check_ids(cls, value):
        batch = isinstance(value, list) and bool(value) and isinstance(value[0], list)
        sequences = value if batch else [value]
        for sequence in sequences:
            if not isinstance(sequence, list):
                raise ValueError(f"ids must be a list of token ids or a list of such lists, got {json_type(value)}")
        whole = [[check_whole_number(item, "each token id") for item in sequence] for sequence in sequences]
        return whole if batch else whole[0]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class TEIError(BaseModel):
    error: str
    error_type: str


class Health(BaseModel):
    """Status, the served model's name and fingerprint; with the server's API key also where and how it runs."""

    status: Literal["ok", "loading", "draining", "failed"]
    model: str | None = Field(None, description="The served name; a local folder is named by its last part.")
    fingerprint: str | None = None
    detail: str | None = None
    model_path: str | None = Field(None, description="With the API key: the local folder the model loaded from.")
    device: str | None = Field(None, description="With the API key: where the model runs.")
    dtype: str | None = Field(None, description="With the API key: the weights' dtype.")
    version: str | None = Field(None, description="With the API key: vecplug's version.")
