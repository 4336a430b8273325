"""Output bindings HTTP API: POST|PUT /v1.0/bindings/{name} with {"data", "metadata", "operation"}.

200 with the binding's response body (its metadata as `metadata.<k>` headers), 204 when it returns none,
400 malformed body, 404/500 unknown binding (runtime), 500 ERR_INVOKE_OUTPUT_BINDING on backend failure.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from capabilities import strict_json
from capabilities.blocks.bindings import errors, service
from capabilities.blocks.bindings.contract import InvokeRequest

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


def parse_body(raw: bytes) -> InvokeRequest:
    if not raw.strip():
        raise errors.malformed('request body is empty; expected {"data", "metadata", "operation"}')
    try:
        body = strict_json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.malformed(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.malformed(f"expected a JSON object, got {type(body).__name__}")
    operation = body.get("operation")
    if not isinstance(operation, str) or not operation:
        raise errors.malformed('operation is required (e.g. "create")')
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise errors.malformed("metadata must be an object of strings")
    return InvokeRequest(
        operation=operation,
        data=service.data_bytes(body.get("data")),
        metadata={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()},
    )


def add_routes(app: web.Application, runtime: Runtime) -> None:
    async def invoke(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        invoke_request = parse_body(await request.read())
        for key in ("traceparent", "tracestate"):
            if request.headers.get(key):
                invoke_request.metadata.setdefault(key, request.headers[key])
        response = await service.invoke(runtime, name, invoke_request)
        headers = {f"metadata.{k}": v for k, v in response.metadata.items() if "\n" not in v}
        if not response.data:
            return web.Response(status=204, headers=headers)
        content_type = response.content_type or "application/json"
        return web.Response(status=200, body=response.data, headers={**headers, "Content-Type": content_type})

    for method in ("POST", "PUT"):
        app.router.add_route(method, "/v1.0/bindings/{name}", invoke)
