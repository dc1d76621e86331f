"""One rule for "these two models make comparable vectors", and the error when they do not.

Every adapter stores which model filled a collection or column and refuses
to put another model's vectors next to them. They all ask here, so the rule
and the error read the same everywhere:

    vecplug.check_same_space(stored, model, where="Qdrant collection 'docs'", action="write to it with")

A side is a ``ModelSpec``, anything with a ``spec`` (a loaded model), or a
mapping as adapters store it: ``ModelSpec.to_dict()`` (``"name"``) or
Chroma's function config (``"model"``), with ``"fingerprint"``,
``"dimensions"`` and ``"prompts"``.

The rule: the fingerprint (a digest of the weights, prompts, pooling and
dimensions) decides. The same weights under another name (a moved
directory, a local copy of a hub model) are the same space; a side without
a fingerprint (a third-party model that computes none) is compared by name
with a side that has none either, and never matches one that has one.
Dimensions and prompts, when both sides give them, must match as well
(they are part of the fingerprint, but a hand-edited record may disagree).
"""
from __future__ import annotations

from collections.abc import Mapping

from .errors import ModelMismatchError

DEFAULT_HINT = (
    "Use the model it was made with, or put this model's vectors in a new collection or column "
    "and embed the texts again."
)


def describe_space(side) -> dict:
    """The parts of a model that decide its vector space, as a plain dict (name, fingerprint, dimensions, prompts)."""
    from .model import EmbeddingModel, ModelSpec

    spec = side.spec if isinstance(side, EmbeddingModel) else side
    if isinstance(spec, Mapping):
        name = spec.get("name") or spec.get("model")
        prompts = spec.get("prompts")
        return {"name": name, "fingerprint": spec.get("fingerprint") or "", "dimensions": spec.get("dimensions"),
                "prompts": dict(prompts) if isinstance(prompts, Mapping) else prompts}
    if isinstance(spec, ModelSpec):
        return {"name": spec.name, "fingerprint": spec.fingerprint or "", "dimensions": spec.dimensions,
                "prompts": dict(spec.prompts)}
    raise TypeError(f"cannot tell the vector space of {side!r}: pass a vecplug.ModelSpec, a model or a spec dict")


def space_differences(stored, current) -> list[tuple[str, object, object]]:
    """(what, stored value, current value) for each reason the two sides are not one vector space; [] if they are."""
    old, new = describe_space(stored), describe_space(current)
    differences = []
    if old["fingerprint"] or new["fingerprint"]:
        if old["fingerprint"] != new["fingerprint"]:
            if old["name"] != new["name"]:
                differences.append(("model", old["name"], new["name"]))
            differences.append(("fingerprint", old["fingerprint"] or None, new["fingerprint"] or None))
    elif old["name"] != new["name"]:
        differences.append(("model", old["name"], new["name"]))
    for key in ("dimensions", "prompts"):
        if old[key] is not None and new[key] is not None and old[key] != new[key]:
            differences.append((key, old[key], new[key]))
    return differences


def same_space(stored, current) -> bool:
    """True when vectors of the two sides are comparable (see the module docstring for the rule)."""
    return not space_differences(stored, current)


def check_same_space(stored, current, *, where: str, action: str = "use it with", hint: str | None = None) -> None:
    """Raise ``ModelMismatchError`` unless ``current`` makes vectors comparable to ``stored``'s.

    ``stored``: what the collection or column records; ``current``: the model
    about to write or query. ``where`` names the place ("Chroma collection
    'docs'", "column public.docs.embedding"); ``action`` says what was about
    to happen ("write to it with", "switch it to"); ``hint`` replaces the
    generic advice on what to do.
    """
    differences = space_differences(stored, current)
    if not differences:
        return
    old, new = describe_space(stored), describe_space(current)
    details = "; ".join(f"{key}: stored {before!r}, now {after!r}" for key, before, after in differences)
    raise ModelMismatchError(
        f"{where} was made with {_summary(old)}; refusing to {action} {_summary(new)}: "
        f"their vectors are not comparable ({details}). {hint or DEFAULT_HINT}"
    )


def _summary(space: dict) -> str:
    return f"{space['name']} ({space['dimensions']} dims, fingerprint {space['fingerprint'] or 'none'})"


def load_recorded_model(spec: Mapping, *, where: str, url: str | None = None, device=None, dtype=None):
    """The model a store recorded (``ModelSpec.to_dict()``), loaded again and checked to make the same vectors.

    A store filled through a ``vecplug serve`` recorded its ``url``: that
    server is asked. The check catches a name whose weights or prompts
    changed since the store was filled, before a single vector is mixed.
    """
    from .registry import load_model

    model = load_model(url or spec["name"], device=device, dtype=dtype, dimensions=spec.get("dimensions"))
    check_same_space(spec, model, where=where, action="open it with what its model name loads today:",
                     hint="Its weights or prompts changed: find the original model files, or re-embed it "
                          "with the new model.")
    return model
