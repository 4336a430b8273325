"""Credential endpoints of the control-plane API (admin scope: the API's guard).

POST /api/v1/credentials {"proxy_id", "namespace", "service_accounts", "labels", "mode", "ttl_s",
"workload_group", "addresses"}: a credential signed by the control plane, plus the mesh root its agent
verifies the xDS port with (`mecha bootstrap --agent-dir`: the signing key never leaves the control plane).
POST /api/v1/credentials/revoke {"jti": ...} or {"proxy_id": ...}.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from xds.controlplane.api_context import CONTROL_PLANE
from xds.identity.credential import CredentialError

DEFAULT_TTL_S = 365 * 86400


def _refusal(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": f"credential: {message}", "diagnostics": []}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    body = json.loads(await request.text() or "{}")
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of strings")
    return value


def _labels(body: dict[str, Any]) -> dict[str, list[str]]:
    value = body.get("labels") or {}
    if not isinstance(value, dict):
        raise ValueError("labels: expected a map of KEY -> value or list of values")
    out: dict[str, list[str]] = {}
    for key, values in value.items():
        items = values if isinstance(values, list) else [values]
        if not all(isinstance(v, str) for v in items):
            raise ValueError(f"labels.{key}: expected strings")
        out[str(key)] = items
    return out


async def issue_credential(request: web.Request) -> web.Response:
    identity = request.app[CONTROL_PLANE].identity
    if identity.issuer is None or identity.ca is None:
        return _refusal("the control plane runs with --insecure-xds: it issues no credentials", 409)
    try:
        body = await _body(request)
        proxy_id = body.get("proxy_id")
        if not isinstance(proxy_id, str) or not proxy_id:
            raise ValueError("proxy_id: required (the proxy's node.id)")
        ttl = body.get("ttl_s", DEFAULT_TTL_S)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float):
            raise ValueError(f"ttl_s: expected a number of seconds, got {ttl!r}")
        token, cred = identity.issuer.issue(
            proxy_id,
            str(body.get("namespace") or "default"),
            _strings(body, "service_accounts") or [proxy_id],
            _labels(body),
            str(body.get("mode") or "sidecar"),
            float(ttl),
            workload_group=str(body.get("workload_group") or ""),
            addresses=_strings(body, "addresses"),
        )
    except (ValueError, CredentialError) as exc:  # CredentialError names the field
        return _refusal(str(exc))
    return web.json_response({
        "token": token,
        "jti": cred.jti,
        "proxy_id": cred.proxy_id,
        "expires_at": cred.expires_at,
        "root_cert": identity.ca.root_pem.decode(),
    })  # fmt: skip


async def revoke_credential(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    try:
        body = await _body(request)
        outcome = cp.identity.revoke(cp.server, jti=str(body.get("jti") or ""),
                                     proxy_id=str(body.get("proxy_id") or ""))  # fmt: skip
    except ValueError as exc:
        return web.json_response({"error": f"credential revocation: {exc}", "diagnostics": []}, status=400)
    return web.json_response(outcome)
