"""GET /api/v1/gateway-api/status: the status of every Gateway API object of the served config, as
`kubectl get gatewayclasses,gateways,httproutes,grpcroutes,tlsroutes,tcproutes -o json` would show it (a v1
List; metadata and status).

Query: `kind` (comma separated: GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute,
BackendTLSPolicy; plurals and any case accepted) and `namespace`. Read-only, API token as every read.
Computed from the store's documents and registry, once per config version; lastTransitionTime is when this
control plane first saw each condition's status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xds.controlplane.api_context import CONTROL_PLANE, error
from xds.gatewayapi.addresses import gateway_addresses, with_addresses
from xds.gatewayapi.certificates import has_certificate
from xds.gatewayapi.convert import convert
from xds.gatewayapi.documents import read_documents
from xds.gatewayapi.kinds import STATUS_KINDS
from xds.gatewayapi.status import ObjectStatus, TransitionClock, render

STATUS_PATH = "/api/v1/gateway-api/status"
CLOCK = web.AppKey("gateway_api_clock", TransitionClock)
_CACHE = web.AppKey("gateway_api_status", dict)  # {"version": int, "statuses": [...]}
_KIND_NAMES = {k.lower(): k for k in STATUS_KINDS} | {f"{k.lower()}s": k for k in STATUS_KINDS}
_KIND_NAMES |= {"gatewayclasses": "GatewayClass", "backendtlspolicies": "BackendTLSPolicy"}


def statuses(documents: Any, config: Any, credentials_known: bool = False) -> list[ObjectStatus]:
    """Status of every Gateway API object of documents (accepted RawDocuments); config: the compiled
    MeshConfig whose registry decides BackendNotFound (None: no registry); credentials_known: its resolved
    inputs hold every credential found (a listener's missing Secret is then InvalidCertificateRef)."""
    inputs, _ = read_documents(list(documents))
    services = config.service_by_host if config is not None else {}
    available = (
        {c.name for c in config.inputs.credentials if has_certificate(c.cert)}
        if config is not None and credentials_known
        else None
    )
    found = convert(inputs, services, available).statuses
    return sorted(found, key=lambda s: (STATUS_KINDS.index(s.meta.kind), s.meta.namespace, s.meta.name))


def _kinds(raw: str) -> set[str] | str:
    """The kinds asked for, or the unknown name (an error message)."""
    out: set[str] = set()
    for name in filter(None, (n.strip().lower() for n in raw.split(","))):
        if name not in _KIND_NAMES:
            return name
        out.add(_KIND_NAMES[name])
    return out


async def status(request: web.Request) -> web.Response:
    kinds = _kinds(request.query.get("kind", ""))
    if isinstance(kinds, str):
        return error(
            400,
            f"kind={kinds!r}: expected GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute"
            " or BackendTLSPolicy",
        )
    namespace = request.query.get("namespace", "")
    control_plane: Any = request.app[CONTROL_PLANE]
    store = control_plane.store
    cached = request.app[_CACHE]
    if cached.get("version") != store.version or "statuses" not in cached:
        # a store with a resolver resolved the credential files with the config: a missing one is known
        found = statuses(store.documents.values(), store.config, store.resolver is not None)
        cached.update(version=store.version, statuses=found)
    clock = request.app[CLOCK]
    items = [
        render(s, clock)
        for s in cached["statuses"]
        if (not kinds or s.meta.kind in kinds)
        and (not namespace or s.meta.kind == "GatewayClass" or s.meta.namespace == namespace)
    ]
    # Gateways' addresses: the gateway proxies connected now (addresses.py), not the cached config's
    items = with_addresses(items, gateway_addresses(store.documents.values(), control_plane.server.proxies()))
    return web.json_response({"apiVersion": "v1", "kind": "List", "version": store.version, "items": items})


def add_routes(app: web.Application) -> None:
    app[CLOCK] = TransitionClock()
    app[_CACHE] = {}
    app.router.add_get(STATUS_PATH, status)
