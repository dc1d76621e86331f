"""What vecplug code may rely on in a model and a loader, written as ``typing.Protocol``s.

The pluggy hookspecs (``hookspecs.py``) say how a plugin joins; these say
what the objects it hands over must offer. Code that receives a model asks
``isinstance(model, TokenPath)`` instead of probing with ``getattr``, and
``tests/core/test_contracts.py`` checks every model vecplug ships (the
built-in ModernBERT, ``RemoteModel``, the MiniLM plugin) against them.

- ``Embedder``: what every model offers, local or remote. ``EmbeddingModel``
  implements all of it on top of one method, ``embed_batch``; a model that
  subclasses it conforms for free.
- ``TokenPath``: what a model offers when it can embed token ids it made
  itself. ``vecplug serve`` then tokenizes requests as they arrive and plans
  forward passes by tokens (one planner, the server's); models without it
  are served text batch by text batch.
- ``ChunkPath``: what a model offers when it can chunk texts by its own
  tokens and pool token states (late chunking).
- ``Loader``: what ``register(spec, loader)`` is given: it loads the model,
  says where its files are on this machine (``vecplug doctor``), and what
  "auto" device and dtype mean here (the model cache's key).
- ``DemoStore``: what an adapter's ``vecplug_demo_store`` hook returns for
  ``vecplug demo``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from .chunking import Chunks
    from .model import ModelSpec


@runtime_checkable
class Embedder(Protocol):
    """A loaded embedding model: ``vecplug.load_model`` returns one, local or ``RemoteModel``."""

    spec: "ModelSpec"
    served_name: "str | None"  # the name its server answers to, when it is remote; None for a local model

    @property
    def name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def truncated_count(self) -> int:
        """Texts cut to ``max_tokens`` since load (the PostgreSQL worker and the server report it)."""

    def embed(self, texts: Iterable[str], kind: str = "document") -> "np.ndarray": ...

    def embed_documents(self, texts: Iterable[str]) -> "np.ndarray": ...

    def embed_queries(self, texts: Iterable[str]) -> "np.ndarray": ...

    def iter_embed(self, texts: Iterable[str], kind: str = "document") -> Iterator["np.ndarray"]: ...

    def iter_embed_chunks(self, texts: Iterable[str], kind: str = "document") -> Iterator["np.ndarray"]: ...

    def embed_chunks(self, texts: Iterable[str], chunk_tokens: int = 512, overlap_tokens: int = 0,
                     late: bool = False) -> "list[Chunks]": ...

    def with_dimensions(self, dimensions: "int | None") -> "Embedder": ...

    def describe(self) -> dict:
        """What the model is and how it runs here, as JSON-able values: the one report."""

    def token_counts(self, texts: list[str], kind: str = "document") -> "list[int] | None": ...

    def forward_flops(self, token_counts: list[int]) -> "float | None": ...


@runtime_checkable
class TokenPath(Protocol):
    """A model that tokenizes itself and embeds token ids: the server's fast path.

    One planner decides the forward passes, with one budget: whoever holds
    the texts calls ``vecplug.token_budget.plan_batches(lengths, budget)``
    (the server with ``--max-batch-tokens``, else ``token_budget``; a model's
    own streaming path with ``token_budget``) and hands each planned pass to
    ``embed_token_ids``, which never re-plans by tokens.

    ``tokenize`` gets prompted texts and returns token ids cut to the
    model's ``max_tokens`` (counting cuts in ``truncated_count``);
    ``embed_token_ids`` embeds exactly the sequences it is given as one
    pass, rows in input order, full dimension (a padded engine may still
    run a pass in slices of texts, as the MiniLM plugin does, never in
    slices of its own token budget). ``token_budget`` is the number of real
    tokens a forward pass holds by default on this device.
    """

    token_budget: int

    def tokenize(self, texts: list[str]) -> list[list[int]]: ...

    def embed_token_ids(self, token_ids: list[list[int]]) -> "np.ndarray": ...


@runtime_checkable
class ChunkPath(Protocol):
    """A model that can say where its tokens fall in a text, and give each token's final state.

    ``EmbeddingModel.embed_chunks`` needs ``token_offsets`` to plan chunks by
    tokens (plain chunking) and the other two for late chunking; the rules
    themselves live once, in ``vecplug.chunking``.

    ``token_offsets`` gets bare texts and gives each one's tokens as
    ``(start, end)`` character offsets, without special tokens and never
    cut to ``max_tokens``. ``encode_with_offsets`` gives ``(ids, offsets,
    special_mask)`` per text with the special tokens, never cut either.
    ``token_states`` runs exactly the sequences it is given as one pass (the
    caller plans it by ``token_budget``) and returns every token's final
    hidden state, float32, sequences one after another in input order.
    """

    token_budget: int

    def token_offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]: ...

    def encode_with_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]: ...

    def token_states(self, token_ids: list[list[int]]) -> "np.ndarray": ...


@runtime_checkable
class Loader(Protocol):
    """What a plugin registers beside a spec: ``register(spec, loader)``.

    ``vecplug.ModelLoader`` gives ``locate`` and ``placement`` defaults; a
    plain callable is accepted too (the registry treats it as one with the
    defaults).
    """

    def __call__(self, spec: "ModelSpec", device: "str | None", dtype: "str | None") -> Embedder: ...

    def locate(self, spec: "ModelSpec") -> "str | None":
        """Where the model's files are on this machine, or None; never downloads."""

    def placement(self, device: "str | None", dtype: "str | None") -> "tuple[str, str]":
        """The concrete (device, dtype) an auto request gets here; settings arrive already checked."""


@runtime_checkable
class DemoStore(Protocol):
    """A database ``vecplug demo`` fills and queries (the ``vecplug_demo_store`` hook returns one)."""

    name: str  # shown to the user: which database, where
    uses_dsn: bool  # True when it writes into the PostgreSQL database the user named with --dsn

    def add(self, ids: list[int], texts: list[str]) -> None:
        """Embed the texts as documents and store them under their ids."""

    def search(self, question: str, limit: int) -> list[tuple[int, float]]:
        """``[(id, cosine similarity), ...]``, best first, for the question embedded as a query."""

    def close(self) -> None: ...
