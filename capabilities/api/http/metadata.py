"""Health, metadata and shutdown: /v1.0/healthz[/outbound], /v1.0/metadata[/{attr}], /v1.0/shutdown."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from capabilities.api.http.common import empty, json_response
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

# Mecha: ready to serve (first component set loaded, APIs listening), whatever a single component's health;
# the proxy's Envoy checks it on its capability clusters (xds/translate/cluster.py CAPABILITY_READY_PATH).
READY_PATH = "/readyz"
UNAUTHENTICATED_PATHS = frozenset({"/v1.0/healthz", "/v1.0/healthz/outbound", "/metrics", READY_PATH})


def _subscription_rules(spec: dict[str, Any]) -> list[dict[str, str]]:
    routes = spec.get("routes")
    rules: list[dict[str, str]] = []
    if isinstance(routes, dict):
        for rule in routes.get("rules") or []:
            if isinstance(rule, dict):
                rules.append({"match": str(rule.get("match", "")), "path": str(rule.get("path", ""))})
        if routes.get("default"):
            rules.append({"match": "", "path": str(routes["default"])})
    elif spec.get("route"):
        rules.append({"match": "", "path": str(spec["route"])})
    return rules


def declarative_subscriptions(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for doc in docs:
        spec = doc.get("spec") or {}
        if not isinstance(spec, dict):
            continue
        entry: dict[str, Any] = {
            "pubsubname": str(spec.get("pubsubname", "")),
            "topic": str(spec.get("topic", "")),
            "rules": {"rules": _subscription_rules(spec)},
            "type": "DECLARATIVE",
        }
        if spec.get("deadLetterTopic"):
            entry["deadLetterTopic"] = str(spec["deadLetterTopic"])
        if isinstance(spec.get("metadata"), dict):
            entry["metadata"] = {str(k): str(v) for k, v in spec["metadata"].items()}
        out.append(entry)
    return out


def _grpc_app_subscriptions(runtime: Runtime) -> list[dict[str, Any]]:
    """What an APP_PROTOCOL=grpc app declared in ListTopicSubscriptions (HTTP delivery records its own in
    runtime.programmatic_subscriptions; gRPC delivery keeps them on its GrpcAppDelivery)."""
    delivery = getattr(runtime, "grpc_app_delivery", None)
    return [sub.to_metadata() for sub in getattr(delivery, "app_subscriptions", [])]


def metadata_document(runtime: Runtime) -> dict[str, Any]:
    from capabilities.runtime import RUNTIME_VERSION

    components = []
    for spec in runtime.component_specs:
        instance = runtime.components(spec.block).get(spec.name)
        features = sorted(str(f) for f in instance.features()) if instance is not None else []
        components.append(
            {"name": spec.name, "type": spec.type, "version": spec.version, "capabilities": features}
        )
    settings = runtime.settings
    app_props: dict[str, Any] = {"protocol": "http", "channelAddress": "127.0.0.1", "maxConcurrency": -1}
    if settings.app_port:
        app_props["port"] = settings.app_port
    if settings.app_url:
        app_props["channelAddress"] = settings.app_url
    return {
        "id": runtime.app_id,
        "runtimeVersion": RUNTIME_VERSION,
        "enabledFeatures": [],
        "actors": [],
        "components": components,
        "httpEndpoints": [],
        "subscriptions": declarative_subscriptions(runtime.subscriptions_docs)
        + list(runtime.programmatic_subscriptions)
        + _grpc_app_subscriptions(runtime),
        "appConnectionProperties": app_props,
        "extended": dict(runtime.extended_metadata),
        # Mecha: each component's health, the failed ones (ignoreErrors: true keeps the sidecar up) with why;
        # daprd only logs them. The dashboard reads this.
        "componentStatus": [
            {"name": c["name"], "type": c["type"], "healthy": True, "error": ""} for c in components
        ]
        + [
            {"name": name, "type": kind, "healthy": False, "error": error}
            for name, (kind, error) in sorted(runtime.component_failures.items())
        ],
    }


def add_routes(app: web.Application, runtime: Runtime) -> None:
    async def healthz(request: web.Request) -> web.Response:
        app_ready = not runtime.app_channel.configured or runtime.app_channel.ready.is_set()
        if runtime.healthy and app_ready:
            return empty()
        reasons = []
        if not runtime.components_ready.is_set():
            reasons.append("components are not loaded yet")
        if not runtime.servers_ready.is_set():
            reasons.append("the gRPC API is not listening yet")
        reasons.extend(runtime.init_errors.values())
        if not app_ready:
            reasons.append(f"app channel {runtime.settings.app_url} is not reachable yet")
        raise DaprError(
            "ERR_HEALTH_NOT_READY", "dapr is not ready: " + "; ".join(reasons), 500, "UNAVAILABLE"
        )

    async def healthz_outbound(request: web.Request) -> web.Response:
        if runtime.healthy:
            return empty()
        raise DaprError("ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready", 500, "UNAVAILABLE")

    async def ready(request: web.Request) -> web.Response:
        if runtime.components_ready.is_set() and runtime.servers_ready.is_set():
            return empty()
        from capabilities.runtime import NOT_READY_CODE, NOT_READY_RETRY_AFTER_S

        waiting = (
            "components are still loading"
            if not runtime.components_ready.is_set()
            else "gRPC API not listening"
        )
        raise DaprError(
            NOT_READY_CODE, f"not ready: {waiting}", 503, "UNAVAILABLE", retry_after_s=NOT_READY_RETRY_AFTER_S
        )

    async def get_metadata(request: web.Request) -> web.Response:
        return json_response(metadata_document(runtime))

    async def put_metadata(request: web.Request) -> web.Response:
        attr = request.match_info["attr"]
        runtime.extended_metadata[attr] = (await request.read()).decode("utf-8", "replace")
        return empty()

    async def shutdown(request: web.Request) -> web.Response:
        # Answer first, then stop (Dapr returns 204 and shuts down asynchronously).
        asyncio.get_running_loop().call_later(0.05, runtime.request_shutdown)
        return empty()

    router = app.router
    router.add_get("/v1.0/healthz", healthz, allow_head=True)
    router.add_get("/v1.0/healthz/outbound", healthz_outbound, allow_head=True)
    router.add_get(READY_PATH, ready, allow_head=True)
    router.add_get("/v1.0/metadata", get_metadata)
    router.add_put("/v1.0/metadata/{attr}", put_metadata)
    router.add_post("/v1.0/shutdown", shutdown)
