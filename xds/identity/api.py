"""POST /api/v1/credentials/revoke {"jti": ...} or {"proxy_id": ...}: admin scope (the API's guard)."""

from __future__ import annotations

import json

from aiohttp import web


async def revoke_credential(request: web.Request) -> web.Response:
    from xds.controlplane.api import CONTROL_PLANE  # the API module imports this one

    cp = request.app[CONTROL_PLANE]
    try:
        body = json.loads(await request.text() or "{}")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        outcome = cp.identity.revoke(cp.server, jti=str(body.get("jti") or ""),
                                     proxy_id=str(body.get("proxy_id") or ""))  # fmt: skip
    except ValueError as exc:
        return web.json_response({"error": f"credential revocation: {exc}", "diagnostics": []}, status=400)
    return web.json_response(outcome)
