"""Names on the wire that ``vecplug serve`` and ``RemoteModel`` must agree on.

The core owns them: the client is plain standard library and must not
import the server (which needs FastAPI, an extra) to learn a header's name.
"""
from __future__ import annotations

# The fingerprint of the vectors in the answer: the served spec, cut to the requested dimensions.
FINGERPRINT_HEADER = "X-Vecplug-Fingerprint"
# How many of the request's texts were cut to max tokens (the PostgreSQL worker counts them).
TRUNCATED_HEADER = "X-Vecplug-Truncated"
