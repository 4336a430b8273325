"""`dapr-api-token` on the gRPC API: when DAPR_API_TOKEN is set every call must carry it as metadata.

Checked by the handler wrapper in wire.py, before any servicer code runs (streams included).

Same messages and code as daprd (setAPIAuthenticationMiddleware: HTTP 401 -> UNAUTHENTICATED).
"""

from __future__ import annotations

import hmac
from typing import Any

API_TOKEN_HEADER = "dapr-api-token"


def check_token(expected: str, metadata: tuple[tuple[str, Any], ...] | None) -> str | None:
    """None when the call may proceed, else the error message daprd would return."""
    if not expected:
        return None
    values = [v for k, v in (metadata or ()) if k == API_TOKEN_HEADER]
    if not values:
        return "missing api token in request metadata"
    given = values[0] if isinstance(values[0], str) else values[0].decode("utf-8", "replace")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return "authentication error: api token mismatch"
    return None
