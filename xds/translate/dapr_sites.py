"""Where a proxy serves the Dapr API: one "site" per Dapr HTTP or gRPC listener.

A sidecar has the proxy-level site(s) (`dapr_http_port` / `dapr_grpc_port`, route configs `dapr-http` /
`dapr-grpc`, fallback cluster `capabilities_http` / `capabilities_grpc`). In node mode every app may carry
its own Dapr ports: each gets its own listener (`dapr_http_<port>`), route configuration
(`dapr-http|<app>`) and fallback cluster (`capabilities_http|<app>`, the app's runtime in the node's
capability service), so apps sharing one Envoy keep their own app id towards the capability service.

Route configuration content depends only on (namespace, invoke routes, token, fallback cluster name), never
on the listener port: equal sites on different proxies share one serialized RouteConfiguration.

DAPR_API_TOKEN (`dapr_api_token`, per app or proxy-wide): invoke routes require the `dapr-api-token` header
with that exact value and strip it before forwarding (daprd strips it too); a request that reaches the
invoke prefixes with another token (or none) gets daprd's 401 from Envoy itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.type.matcher import v3 as matcher

from xds.proxy import AppBinding, ProxyIdentity, ProxyMode
from xds.translate.dapr_routes import API_TOKEN_HEADER, APP_ID_HEADER, CAPABILITIES_GRPC, CAPABILITIES_HTTP

# daprd's answer for a missing/wrong token is 401 "invalid api token" (pkg/api/http/middlewares.go); the
# capability service answers the same message in Dapr's JSON error shape, and so does Envoy here.
UNAUTHORIZED_BODY = json.dumps(
    {"errorCode": "ERR_UNAUTHORIZED", "message": "invalid api token"}, separators=(",", ":")
)
UNAUTHORIZED_GRPC_STATUS = "16"  # UNAUTHENTICATED, sent as a trailers-only gRPC response
# daprd's gRPC API messages (the capability service's gRPC API uses the same, docs/dapr-sdks.md)
GRPC_MISSING_TOKEN = "missing api token in request metadata"
GRPC_WRONG_TOKEN = "authentication error: api token mismatch"


@dataclass(frozen=True, slots=True)
class DaprSite:
    port: int
    grpc: bool
    listener: str  # listener name, unique per proxy: dapr_http_<port> / dapr_grpc_<port>
    route: str  # RDS name: dapr-http | dapr-grpc (proxy-level) or dapr-http|<app> (per app)
    namespace: str  # app ids of services in this namespace are also reachable by their short name
    cluster: str  # fallback cluster (the capability service); meaningful when target is set
    target: str | None  # host:port of the capability service behind this listener; None: no fallback
    token: str = ""  # DAPR_API_TOKEN the invoke routes require ("" = none)

    @property
    def stat_prefix(self) -> str:
        return self.listener


def _kind(grpc: bool) -> str:
    return "grpc" if grpc else "http"


def app_site_keys(proxy: ProxyIdentity) -> dict[int, str]:
    """index of each app with its own Dapr ports -> the name suffix of its resources (the app name; with
    the Dapr HTTP (else gRPC) port appended when two such apps of the proxy share a name, e.g. replicas)."""
    with_dapr = [(i, a) for i, a in enumerate(proxy.apps) if a.has_dapr]
    names = [a.name for _, a in with_dapr]
    keys: dict[int, str] = {}
    for i, app in with_dapr:
        port = app.dapr_http_port if app.dapr_http_port is not None else app.dapr_grpc_port
        keys[i] = app.name if names.count(app.name) == 1 else f"{app.name}|{port}"
    return keys


def _app_sites(proxy: ProxyIdentity, app: AppBinding, key: str) -> list[DaprSite]:
    out = []
    for port, grpc, own_target, shared_target in (
        (app.dapr_http_port, False, app.capabilities_http, proxy.capabilities_http),
        (app.dapr_grpc_port, True, app.capabilities_grpc, proxy.capabilities_grpc),
    ):
        if port is None:
            continue
        shared = CAPABILITIES_GRPC if grpc else CAPABILITIES_HTTP
        out.append(
            DaprSite(
                port=port,
                grpc=grpc,
                listener=f"dapr_{_kind(grpc)}_{port}",
                route=f"dapr-{_kind(grpc)}|{key}",
                namespace=app.namespace,
                # no address of its own: fall back to the proxy-wide capability service
                cluster=f"{shared}|{key}" if own_target else shared,
                target=own_target or shared_target,
                token=app.dapr_api_token or proxy.dapr_api_token or "",
            )
        )
    return out


def dapr_sites(proxy: ProxyIdentity) -> list[DaprSite]:
    """Every Dapr listener of the proxy: the proxy-level ones first, then per app (in apps order)."""
    if proxy.mode is ProxyMode.GATEWAY:
        return []
    out = []
    for port, grpc, target in (
        (proxy.dapr_http_port, False, proxy.capabilities_http),
        (proxy.dapr_grpc_port, True, proxy.capabilities_grpc),
    ):
        if port is not None:
            out.append(
                DaprSite(
                    port=port,
                    grpc=grpc,
                    listener=f"dapr_{_kind(grpc)}_{port}",
                    route=f"dapr-{_kind(grpc)}",
                    namespace=proxy.namespace,
                    cluster=CAPABILITIES_GRPC if grpc else CAPABILITIES_HTTP,
                    target=target,
                    token=proxy.dapr_api_token or "",
                )
            )
    keys = app_site_keys(proxy)
    for i, app in enumerate(proxy.apps):
        if i in keys:
            out += _app_sites(proxy, app, keys[i])
    return out


def app_capability_clusters(proxy: ProxyIdentity) -> list[tuple[str, str, bool]]:
    """(cluster name, host:port, http2) of each app's own capability runtime (the proxy-wide ones are
    listed by the builder as before)."""
    out: list[tuple[str, str, bool]] = []
    for site in dapr_sites(proxy):
        if site.target and site.cluster not in (CAPABILITIES_HTTP, CAPABILITIES_GRPC):
            out.append((site.cluster, site.target, site.grpc))
    return out


# ---- DAPR_API_TOKEN: the 401 routes after the invoke routes ------------------------------------------


def _wrong_token(token: str) -> rte.HeaderMatcher:
    """Matches when dapr-api-token is missing or differs from `token`."""
    return rte.HeaderMatcher(
        name=API_TOKEN_HEADER,
        string_match=matcher.StringMatcher(exact=token),
        invert_match=True,
        treat_missing_header_as_empty=True,
    )


def _reject_action(grpc: bool, message: str = "") -> dict[str, object]:
    if grpc:  # a trailers-only gRPC answer, with the status and message daprd's gRPC API gives
        headers = {
            "content-type": "application/grpc",
            "grpc-status": UNAUTHORIZED_GRPC_STATUS,
            "grpc-message": message,
        }
        return {
            "direct_response": rte.DirectResponseAction(status=200),
            "response_headers_to_add": _headers(headers),
        }
    return {
        "direct_response": rte.DirectResponseAction(
            status=401, body=core.DataSource(inline_string=UNAUTHORIZED_BODY)
        ),
        "response_headers_to_add": _headers({"content-type": "application/json"}),
    }


def _headers(values: dict[str, str]) -> list[core.HeaderValueOption]:
    return [
        core.HeaderValueOption(
            header=core.HeaderValue(key=k, value=v),
            append_action=core.HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
        )
        for k, v in values.items()
    ]


def token_reject_routes(token: str, grpc: bool) -> list[rte.Route]:
    """401 for invoke requests without the right token. Requests with the right token to an unknown app
    id fall through to the capability service, which answers Dapr's own error for it."""
    if not token:
        return []
    wrong = _wrong_token(token)
    app_id = rte.HeaderMatcher(name=APP_ID_HEADER, present_match=True)
    if grpc:  # only dapr-app-id proxying on the gRPC port; daprd tells a missing token from a wrong one
        missing = rte.HeaderMatcher(name=API_TOKEN_HEADER, present_match=True, invert_match=True)
        return [
            rte.Route(
                name="app-id/missing-token",
                match=rte.RouteMatch(prefix="/", headers=[app_id, missing]),
                **_reject_action(grpc, GRPC_MISSING_TOKEN),  # type: ignore[arg-type]
            ),
            rte.Route(
                name="app-id/unauthorized",
                match=rte.RouteMatch(prefix="/", headers=[app_id, wrong]),
                **_reject_action(grpc, GRPC_WRONG_TOKEN),  # type: ignore[arg-type]
            ),
        ]
    return [
        rte.Route(
            name="invoke/unauthorized",
            match=rte.RouteMatch(prefix="/v1.0/invoke/", headers=[wrong]),
            **_reject_action(grpc),  # type: ignore[arg-type]
        ),
        rte.Route(
            name="app-id/unauthorized",
            match=rte.RouteMatch(prefix="/", headers=[app_id, wrong]),
            **_reject_action(grpc),  # type: ignore[arg-type]
        ),
    ]


@cache
def token_reject_bytes(token: str, grpc: bool) -> tuple[bytes, ...]:
    return tuple(bytes(r) for r in token_reject_routes(token, grpc))


# ---- APP_API_TOKEN: added by the app's inbound route ------------------------------------------------


def app_token_headers(proxy: ProxyIdentity, app: AppBinding) -> list[core.HeaderValueOption]:
    """request_headers_to_add of the app's inbound route: dapr-api-token = APP_API_TOKEN (replacing any
    value a caller sent), as daprd sends it on every call to the app."""
    token = app.app_api_token or proxy.app_api_token
    return _headers({API_TOKEN_HEADER: token}) if token else []
