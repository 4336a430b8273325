"""Request parsing and response helpers shared by the HTTP handlers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from capabilities import strict_json
from capabilities.errors import DaprError

UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})  # JSON is UTF-8 (RFC 8259); ASCII is a subset
JSON_TYPES = ("application/json", "text/json", "application/cloudevents+json")


def malformed(reason: str) -> DaprError:
    return DaprError(
        "ERR_MALFORMED_REQUEST", f"failed deserializing HTTP body: {reason}", 400, "INVALID_ARGUMENT"
    )


async def read_json(request: web.Request, *, allow_empty: bool = False) -> Any:
    """The JSON body. Like daprd, the Content-Type is not required to be JSON (curl -d sends form type), but
    types that cannot carry a JSON document (multipart, images...) are refused with a clear message."""
    ctype = request.content_type
    if ctype.startswith(("multipart/", "image/", "audio/", "video/")):
        raise malformed(f"Content-Type {ctype} is not supported here; send a JSON body (application/json)")
    charset = (request.charset or "utf-8").lower()
    if charset not in UTF8_NAMES:
        raise malformed(f"Content-Type charset {charset!r} is not supported; send UTF-8 JSON")
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return None
        raise malformed("request body is empty; expected JSON")
    try:
        return strict_json.loads(raw)
    except ValueError as exc:
        raise malformed(str(exc)) from None


def query_metadata(request: web.Request) -> dict[str, str]:
    """`?metadata.<k>=v` query parameters as {k: v}."""
    return {k[len("metadata.") :]: v for k, v in request.query.items() if k.startswith("metadata.")}


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def raw_json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def empty() -> web.Response:
    return web.Response(status=204)


def require_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed(f"{where}: expected an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
