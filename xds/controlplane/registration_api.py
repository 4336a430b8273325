"""Workload registration over the API.

POST /api/v1/workloads/health {"healthy": bool, "draining": bool, "message": str, "proxy_id": str}: a
proxy's capability service (app health check) or its shutdown path reports on its own WorkloadEntry
(proxy_id: which instance, for a credential shared by scaled replicas). Authenticated by the workload
credential (Authorization: Bearer <token of `mecha credential issue`>), not by the API token: the credential
names the entry, so a workload can only ever change its own endpoint.
GET /api/v1/workloads: registered entries and proxies refused registration (API token, like every read).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from xds.controlplane.api_context import CONTROL_PLANE
from xds.controlplane.registration import RegistrationError


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "diagnostics": []}, status=status)


def _flag(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"field {name!r}: expected true or false, got {value!r:.40}")


async def report_health(request: web.Request) -> web.Response:
    from xds.identity.authenticator import AuthError

    cp = request.app[CONTROL_PLANE]
    authenticator = cp.identity.authenticator
    if authenticator is None:
        return _error(409, "workload health reports need workload credentials (the control plane runs with "
                           "--insecure-xds)")  # fmt: skip
    try:
        cred = authenticator.credential({"authorization": request.headers.get("Authorization", "")})
    except AuthError as exc:
        return web.json_response(
            {"error": exc.message, "diagnostics": []}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        body = json.loads(await request.text() or "{}")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        unknown = sorted(set(body) - {"healthy", "draining", "message", "proxy_id"})
        if unknown:
            raise ValueError(f"field {unknown[0]!r}: unknown (use healthy, draining, message, proxy_id)")
        proxy_id = body.get("proxy_id") or ""
        if not isinstance(proxy_id, str):
            raise ValueError(f"field 'proxy_id': expected a string, got {proxy_id!r:.40}")
        healthy, draining = _flag(body, "healthy"), _flag(body, "draining")
        if healthy is None and draining is None:
            raise ValueError("field 'healthy' or 'draining': one is required")
        message = str(body.get("message") or "")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return _error(400, f"workload health report: {exc}")
    try:
        outcome = await cp.registration.report(cred, healthy, draining, message, proxy_id)
    except RegistrationError as exc:
        return _error(exc.status, exc.message)
    return web.json_response(outcome)


async def workloads(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    return web.json_response({"workloads": cp.registration.view(), "refused": cp.registration.refused})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/workloads/health", report_health)
    app.router.add_get("/api/v1/workloads", workloads)
