"""The model base classes: ``ModelSpec`` describes a vector space, ``EmbeddingModel`` fills it, ``ModelLoader`` loads it.

Subclasses of ``EmbeddingModel`` implement one method, ``embed_batch``;
prompts, input checks, Matryoshka truncation and streaming are built on it
here, so every model, built-in or third-party, treats input the same way.
What other code may rely on is written down in ``contracts.py``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from .errors import InvalidSettingError

if TYPE_CHECKING:  # numpy is light, but keep `vecplug --help` free of it
    import numpy as np

    from .chunking import Chunks

KINDS = ("document", "query")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What identifies a model's vector space and how to feed it.

    ``prompts`` maps a kind ("document", "query") to the prefix put before each
    text of that kind. ``fingerprint`` is a digest of the weights, prompts,
    pooling and dimensions: two specs with the same fingerprint produce
    comparable vectors; adapters store it and refuse to mix two of them.
    It is empty until the weights are known (a registered, not yet loaded
    hub model), and set on every loaded model's spec.

    ``matryoshka_dims``: the sizes the model was trained to be cut to
    (Matryoshka); its vectors may then be cut to any size up to the full
    one. A model without them is refused a smaller ``dimensions``, unless
    its spec says ``any_dimensions=True``: the plugin allows cutting
    without knowing the training (vecplug's ModernBERT plugin does so for
    a checkpoint it does not know).
    """

    name: str
    dimensions: int
    max_tokens: int
    prompts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    matryoshka_dims: tuple[int, ...] = ()
    fingerprint: str = ""
    description: str = ""
    any_dimensions: bool = False

    def __post_init__(self):
        # frozen, so normalise through object.__setattr__; a plain dict would be mutable
        object.__setattr__(self, "prompts", dict(self.prompts))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "matryoshka_dims", tuple(self.matryoshka_dims))

    def __hash__(self):
        return hash((self.name, self.dimensions, self.fingerprint))

    def prompt_for(self, kind: str) -> str:
        check_kind(kind)
        return self.prompts.get(kind, "")

    def apply_prompt(self, text: str, kind: str) -> str:
        """``text`` as the model reads it for ``kind``: its prompt, then the text; one rule for every path.

        A text that already starts with one of the model's prompts is not
        prefixed again: it is read as it stands, so a text starting with the
        query prompt is embedded as a query whatever kind was asked. Tools
        that add the prompt themselves (Milvus's ``search_prompt``, a user
        who read the model card) then get exactly vecplug's vectors instead
        of a doubled prompt. ``kind`` is a kind, or any other prompt name of
        the model (TEI's ``prompt_name``).
        """
        prompt = self.prompts[kind] if kind in self.prompts else self.prompt_for(kind)
        return text if self.starts_with_prompt(text) else prompt + text

    def starts_with_prompt(self, text: str) -> bool:
        """Whether ``text`` already begins with one of this model's (non-empty) prompts."""
        return any(prompt and text.startswith(prompt) for prompt in self.prompts.values())

    def truncated(self, dimensions: int | None) -> "ModelSpec":
        """The spec of this model's vectors cut to ``dimensions`` (Matryoshka)."""
        dimensions = check_dimensions(dimensions, self)
        if dimensions is None or dimensions == self.dimensions:
            return self
        fingerprint = compute_fingerprint(self.fingerprint, dimensions=dimensions) if self.fingerprint else ""
        return dataclasses.replace(self, dimensions=dimensions, fingerprint=fingerprint)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "dimensions": self.dimensions,
            "matryoshka_dims": list(self.matryoshka_dims),
            "any_dimensions": self.any_dimensions,
            "max_tokens": self.max_tokens,
            "prompts": dict(self.prompts),
            "fingerprint": self.fingerprint,
        }


def compute_fingerprint(*parts, **named) -> str:
    """A short stable digest of JSON-able parts; what identifies a vector space."""
    payload = json.dumps([parts, named], sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:24]


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'document' or 'query', got {kind!r}")


def normalise_dimensions(dimensions) -> int | None:
    """A positive int from any integer type (``numpy.int64`` from an array too); None stays None."""
    import numbers

    if dimensions is None:
        return None
    if isinstance(dimensions, bool) or not isinstance(dimensions, numbers.Integral) or dimensions < 1:
        raise InvalidSettingError(
            f"dimensions must be a positive integer (or None for the model's full size), got {dimensions!r}"
        )
    return int(dimensions)


def check_dimensions(dimensions, spec: ModelSpec) -> int:
    """``dimensions`` as an int, if ``spec``'s vectors can be cut to it (Matryoshka); else InvalidSettingError.

    Fewer than the full size needs a model trained for it (``matryoshka_dims``)
    or a spec that allows any cut (``any_dimensions``): cutting the vectors
    of a model trained at one size loses quality with no error anywhere.
    """
    dimensions = normalise_dimensions(dimensions)
    if dimensions is not None and dimensions > spec.dimensions:
        raise InvalidSettingError(
            f"{spec.name} makes {spec.dimensions}-dimensional vectors; dimensions={dimensions} asks for "
            f"more than it has: pass {spec.dimensions} or fewer"
            + (f" (it was trained for {', '.join(map(str, spec.matryoshka_dims))})" if spec.matryoshka_dims else "")
        )
    if dimensions is not None and dimensions < spec.dimensions and not (spec.matryoshka_dims or spec.any_dimensions):
        raise InvalidSettingError(
            f"{spec.name} has no Matryoshka dimensions (it was not trained to have its vectors cut): "
            f"dimensions={dimensions} would cut its {spec.dimensions}-dimensional vectors and lose quality "
            f"silently; leave dimensions out (or pass {spec.dimensions}), or pick a Matryoshka model "
            "such as nomic-ai/modernbert-embed-base"
        )
    return dimensions


def check_text(text, index: int) -> str:
    """Texts must be str that UTF-8 can encode; say which item is not, so a user can find it.

    A lone surrogate ("\\udcff", what ``errors="surrogateescape"`` makes of
    undecodable bytes) cannot be tokenized or stored; found here, it names
    its text instead of failing a whole batch without one.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"text at index {index} is {type(text).__name__} ({text!r:.60}), expected str; "
            "decode bytes and replace None before embedding"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"text at index {index} has a lone surrogate {text[error.start]!r} at character {error.start} "
                f"({text!r:.60}): not valid Unicode, usually bytes decoded with errors='surrogateescape'; "
                "decode them with errors='replace' (or the right encoding) before embedding"
            ) from None
    return text


def refuse_single_text(texts) -> None:
    """A bare str is an iterable of characters, and bytes of ints: neither is a list of texts."""
    if isinstance(texts, (str, bytes, bytearray)):
        raise TypeError(
            f"texts must be a list of str (or an iterable of them), not a single {type(texts).__name__}; "
            "wrap it in a list"
        )


def cut_dimensions(vectors: "np.ndarray", dimensions: int) -> "np.ndarray":
    """Matryoshka truncation to ``dimensions`` then re-normalisation: what a smaller view of a model returns."""
    import numpy as np

    cut = vectors[:, :dimensions]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def check_texts(texts) -> list[str]:
    refuse_single_text(texts)
    return [check_text(text, index) for index, text in enumerate(texts)]


class EmbeddingModel:
    """A loaded embedding model. Subclasses implement ``embed_batch``.

    ``embed_batch(texts)`` gets texts with their prompt already applied and
    returns L2-normalised float32 vectors of the model's full dimension.
    """

    spec: ModelSpec
    batch_size: int = 32
    served_name: str | None = None  # a remote model's name on its server; None for a local one

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self._full_spec = spec

    # -- the one method to implement ------------------------------------
    def embed_batch(self, texts: list[str]) -> "np.ndarray":
        raise NotImplementedError

    # -- built on it ------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dimensions(self) -> int:
        return self.spec.dimensions

    @property
    def max_tokens(self) -> int:
        return self.spec.max_tokens

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint

    def describe(self) -> dict:
        """What this model is and how it runs here, as plain JSON-able values: the one report.

        ``vecplug doctor``, the bench header and logs print it. The base class
        knows the spec and the class; engines add how they run, flat, each
        setting with a ``<key>_reason`` where there is one (ModernBERT:
        ``device``, ``dtype``, ``attention``, ``compiled``, ``threads``,
        ``openmp_wait`` ...), the same keys the ``vecplug_engine_report`` hook
        gives before any model is loaded.
        """
        return {
            "name": self.name,
            "dimensions": self.dimensions,
            "max_tokens": self.max_tokens,
            "fingerprint": self.fingerprint,
            "prompts": dict(self.spec.prompts),
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "engine": type(self).__name__,
        }

    def with_dimensions(self, dimensions: int | None) -> "EmbeddingModel":
        """A view of this model that cuts vectors to ``dimensions`` and re-normalises.

        The view shares weights and state with this model (no second load).
        """
        dimensions = check_dimensions(dimensions, self._full_spec)
        if dimensions is None or dimensions == self.spec.dimensions:
            return self
        spec = self._full_spec.truncated(dimensions)
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.spec = spec
        return view

    def embed(self, texts: Iterable[str], kind: str = "document") -> "np.ndarray":
        """Embed a finite list of texts with the prompt for ``kind``."""
        import numpy as np

        check_kind(kind)
        texts = check_texts(texts)
        chunks = list(self.iter_embed_chunks(texts, kind))
        if not chunks:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def embed_documents(self, texts: Iterable[str]) -> "np.ndarray":
        return self.embed(texts, "document")

    def embed_queries(self, texts: Iterable[str]) -> "np.ndarray":
        return self.embed(texts, "query")

    def embed_chunks(self, texts: Iterable[str], chunk_tokens: int = 512, overlap_tokens: int = 0,
                     late: bool = False) -> "list[Chunks]":
        """Each text as passages of at most ``chunk_tokens`` of its own tokens, with a vector per passage.

        One ``vecplug.Chunks`` per text (``.spans``, ``.texts``, ``.vectors``),
        embedded as documents. ``late=True`` embeds each whole text once and
        pools every chunk from token states that saw all of it (late
        chunking); the rules are in ``vecplug.chunking``. Needs a model that
        knows its tokens (``contracts.ChunkPath``).
        """
        from .chunking import embed_chunks

        return embed_chunks(self, texts, chunk_tokens, overlap_tokens, late)

    def iter_embed(self, texts: Iterable[str], kind: str = "document") -> Iterator["np.ndarray"]:
        """Embed a stream of any length, yielding one vector per text, in order."""
        return (vector for chunk in self.iter_embed_chunks(texts, kind) for vector in chunk)

    def iter_embed_chunks(self, texts: Iterable[str], kind: str = "document") -> Iterator["np.ndarray"]:
        """Embed a stream of any length, yielding (n, dim) arrays whose rows follow the input order.

        Memory stays bounded by the batch, not the stream: a generator of a
        million texts is never held at once. A bad item raises TypeError
        naming its index when the stream reaches it; a bare str or bytes,
        or a bad kind, raises here, at the call.
        """
        check_kind(kind)
        refuse_single_text(texts)
        return self._iter_chunks(texts, kind)

    def _iter_chunks(self, texts: Iterable[str], kind: str) -> Iterator["np.ndarray"]:
        apply_prompt = self.spec.apply_prompt
        prompted = (apply_prompt(check_text(text, index), kind) for index, text in enumerate(texts))
        for chunk in self._iter_full(prompted):
            yield self._cut(chunk)

    def _iter_full(self, prompted_texts: Iterator[str]) -> Iterator["np.ndarray"]:
        """Full-dimension vectors in input order; models with smarter batching override this."""
        batch: list[str] = []
        for text in prompted_texts:
            batch.append(text)
            if len(batch) >= self.batch_size:
                yield self.embed_batch(batch)
                batch = []
        if batch:
            yield self.embed_batch(batch)

    # -- how it runs: vecplug doctor and vecplug bench ask here, never engine internals
    @property
    def truncated_count(self) -> int:
        """Texts cut to ``max_tokens`` since load; engines that truncate count them (0 when nothing cuts)."""
        return 0

    def token_counts(self, texts: list[str], kind: str = "document") -> "list[int] | None":
        """Tokens per text with the ``kind`` prompt, as the model sees them; None if the engine cannot tell."""
        return None

    def forward_flops(self, token_counts: list[int]) -> "float | None":
        """Forward FLOPs for texts of these token counts (real tokens, no padding): the numerator of MFU."""
        return None

    def _cut(self, vectors: "np.ndarray") -> "np.ndarray":
        """Matryoshka truncation then re-normalisation, when this view asks for fewer dims."""
        import numpy as np

        vectors = np.asarray(vectors, dtype=np.float32)
        if self.spec.dimensions == vectors.shape[-1]:
            return vectors
        return cut_dimensions(vectors, self.spec.dimensions)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dimensions}>"


class ModelLoader:
    """A base for what plugins register beside a spec (the ``vecplug.contracts.Loader`` contract).

    Subclasses implement ``__call__(spec, device, dtype)``; ``device`` and
    ``dtype`` arrive checked and normalised by the core, after ``placement``.
    Override ``locate`` when the plugin can tell where the files are (``vecplug
    doctor`` lists them) and ``placement`` to say what auto (None) means here.
    """

    def __call__(self, spec: ModelSpec, device: str | None, dtype: str | None) -> EmbeddingModel:
        raise NotImplementedError

    def locate(self, spec: ModelSpec) -> str | None:
        """Where this model's files are on this machine, or None; never downloads."""
        raise NotImplementedError("its plugin cannot tell whether it is on this machine")

    def placement(self, device: str | None, dtype: str | None) -> tuple[str | None, str | None]:
        """The concrete (device, dtype) for a request; by default the request itself."""
        return device, dtype
