"""What model a ``vecplug serve`` serves, asked at install time (stdlib only).

``vecplug pg install`` records the served model's name, fingerprint and
dimensions next to the URL: the SQL functions then refuse a server whose
model changed, and the vectorizers size their columns from it. Plain
``urllib`` so that installing needs only the ``postgres`` extra.
"""
from __future__ import annotations

import dataclasses
import json

from vecplug.errors import VecplugError


class ServerUnavailableError(VecplugError, ConnectionError):
    """The embedding server could not be reached or did not answer as a ``vecplug serve`` does."""


@dataclasses.dataclass(frozen=True)
class ServedModel:
    name: str  # the served name the server answers with
    dimensions: int
    fingerprint: str
    matryoshka_dims: tuple[int, ...] = ()


def served_models(url: str, api_key: str | None = None, timeout: float = 10.0) -> list[ServedModel]:
    """``GET {url}/v1/models``, as ``ServedModel`` objects (those with vecplug's description)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + "/v1/models", headers={"Accept": "application/json"})
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) checked by caller)
            listing = json.loads(response.read())
    except urllib.error.HTTPError as error:
        hint = " (the API key is missing or wrong)" if error.code in (401, 403) else ""
        raise ServerUnavailableError(f"the embedding server at {url} answered HTTP {error.code}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ServerUnavailableError(f"could not reach the embedding server at {url}: {reason}") from None
    models = []
    for entry in listing.get("data") or [] if isinstance(listing, dict) else []:
        described = entry.get("vecplug") if isinstance(entry, dict) else None
        if isinstance(described, dict):
            models.append(ServedModel(str(entry.get("id")), int(described.get("dimensions") or 0),
                                      str(described.get("fingerprint") or ""),
                                      tuple(int(d) for d in described.get("matryoshka_dims") or ())))
    if not models:
        raise ServerUnavailableError(f"{url} answered /v1/models without a vecplug model: is it a `vecplug serve`?")
    return models
