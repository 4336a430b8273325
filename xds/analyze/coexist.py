"""Istio and Gateway API routes for one host, as istiod lets them coexist.

istiod converts every HTTPRoute into a VirtualService bound to its Gateway's converted Istio Gateway, so both
APIs meet in one model: a gateway proxy serving an Istio Gateway and a Gateway API Gateway on the same port
merges the routes both have for one virtual host (the same host name) into one list (gateways oldest first,
then VirtualServices), and the first route that matches wins: one API's routes can shadow the other's. On
separate proxies (`mecha up` starts one per Gateway API Gateway) they never meet. Offline, which proxy serves
which Gateway is not known, so `mecha analyze` reports every such pair where the HTTPRoute is written: file,
document and field."""

from __future__ import annotations

from dataclasses import dataclass

from xds.diagnostics import Diagnostic, Location, Severity
from xds.gatewayapi import hostnames
from xds.gatewayapi.convert import convert
from xds.gatewayapi.documents import GatewayApiInputs
from xds.gatewayapi.kinds import is_namespace
from xds.gatewayapi.objects import Gateway as ApiGateway
from xds.gatewayapi.objects import HTTPRoute as ApiRoute
from xds.gatewayapi.stage import GatewayApiStage
from xds.model.gateway import Gateway, GatewayServer, gateways
from xds.model.mesh import MeshConfig
from xds.sources.kinds import Family, classify
from xds.sources.loader import RawDocument

CODE = "gateway-api-coexist"
_HTTP = ("HTTP", "HTTPS")


@dataclass(frozen=True)
class _IstioClaim:
    port: int
    host: str
    gateway: str  # NS/NAME of the Istio Gateway
    where: str  # "FILE doc N (VirtualService NS/NAME) spec.hosts[i]"


def coexistence(docs: list[RawDocument], config: MeshConfig) -> list[Diagnostic]:
    """A warning on each HTTPRoute hostname (or parentRef, without hostnames) whose virtual host an Istio
    VirtualService also routes on the same gateway port (the same name: `*.example.com` and `a.example.com`
    are two virtual hosts, and Envoy sends each request to the most specific one only)."""
    stage = GatewayApiStage()
    api_docs: set[tuple[str, int]] = set()
    for doc in docs:
        info, _ = classify(doc.api_version, doc.kind)
        if is_namespace(doc.api_version, doc.kind):  # its labels decide allowedRoutes selectors
            stage.read_namespace(doc)
        elif info is not None and info.family is Family.GATEWAY_API:
            stage.read(doc)
            api_docs.add((doc.location.file, doc.location.document))
    inputs = stage.inputs
    if inputs is None or not inputs.routes:
        return []
    istio = _istio_claims(config, api_docs)
    if not istio:
        return []
    out: list[Diagnostic] = []
    for route, gateway, port, host, field in _route_claims(inputs, config):
        for claim in istio:
            if claim.port != port or claim.host != host:
                continue  # another virtual host: requests go to the most specific one, nothing merges
            msg = (
                f"host {host} on port {port} is also routed by {claim.where} on Istio Gateway "
                f"{claim.gateway}: a gateway proxy serving both that Gateway and Gateway {gateway} merges "
                "their routes for the host into one virtual host, where the first match wins (istiod: the "
                "older Gateway's routes first); on separate proxies both are served"
            )
            out.append(Diagnostic(route.meta.location, field, msg, Severity.WARNING, CODE))
    return out


def _istio_claims(config: MeshConfig, api_docs: set[tuple[str, int]]) -> list[_IstioClaim]:
    """(port, host) of every written VirtualService on every HTTP/HTTPS server of its Istio Gateways (not the
    ones converted from the Gateway API: their location is the Gateway API document)."""
    by_ref: dict[str, Gateway] = {
        gw.ref: gw
        for gw in gateways(config.carried)
        if (gw.meta.location.file, gw.meta.location.document) not in api_docs
    }
    out: list[_IstioClaim] = []
    for vs in config.virtual_services:
        loc = vs.meta.location
        if vs.is_delegate or (loc.file, loc.document) in api_docs:
            continue
        for ref in vs.gateways:
            gw = by_ref.get(ref if "/" in ref else f"{vs.meta.namespace}/{ref}")
            if gw is None:
                continue
            for server in gw.servers:
                if server.protocol not in _HTTP and not server.is_http:
                    continue
                for i, vs_host in enumerate(vs.hosts):
                    for server_host in _server_hosts(server, vs.meta.namespace, gw.meta.namespace):
                        if hostnames.intersection(server_host, vs_host) is None:
                            continue
                        where = f"{_short(loc)} spec.hosts[{i}]"
                        out.append(_IstioClaim(server.number, _narrower(server_host, vs_host), gw.ref, where))
    return out


def _route_claims(inputs: GatewayApiInputs, config: MeshConfig) -> list[tuple[ApiRoute, str, int, str, str]]:
    """(route, gateway NS/NAME, listener port, host, field) of each HTTPRoute parent the conversion took."""
    conversion = convert(inputs, {s.host: s for s in config.services})
    accepted: set[tuple[str, str, str, str]] = set()  # (route ns, route name, parent ns, parent name)
    for status in conversion.statuses:
        for parent in status.parents or ():
            if any(c.type == "Accepted" and c.status == "True" for c in parent.conditions):
                ns = parent.parent_ref.get("namespace", status.meta.namespace)
                accepted.add((status.meta.namespace, status.meta.name, ns, parent.parent_ref["name"]))
    by_ref: dict[tuple[str, str], ApiGateway] = {(g.meta.namespace, g.meta.name): g for g in inputs.gateways}
    out: list[tuple[ApiRoute, str, int, str, str]] = []
    for route in inputs.routes:
        for ref in route.parent_refs:
            gw = by_ref.get((ref.namespace, ref.name))
            if ref.kind != "Gateway" or gw is None:
                continue
            if (route.meta.namespace, route.meta.name, ref.namespace, ref.name) not in accepted:
                continue
            for listener in gw.listeners:
                if listener.protocol not in _HTTP or (ref.section and ref.section != listener.name):
                    continue
                if ref.port is not None and ref.port != listener.port:
                    continue
                for host in hostnames.served_hosts(listener.hostname, route.hostnames):
                    field = _route_field(route, host, ref.index)
                    out.append((route, f"{gw.meta.namespace}/{gw.meta.name}", listener.port, host, field))
    return out


def _route_field(route: ApiRoute, host: str, parent_index: int) -> str:
    for j, written in enumerate(route.hostnames):
        if written == host or hostnames.covers(written, host):
            return f"spec.hostnames[{j}]"
    return f"spec.parentRefs[{parent_index}]"


def _server_hosts(server: GatewayServer, vs_namespace: str, gateway_namespace: str) -> list[str]:
    """The `[namespace/]host` entries of a server a VirtualService of vs_namespace binds to (istiod)."""
    out = []
    for entry in server.hosts:
        ns, _, host = entry.rpartition("/")
        if ns == ".":
            ns = gateway_namespace
        if ns in ("", "*") or ns == vs_namespace:
            out.append(host)
    return out


def _narrower(a: str, b: str) -> str:
    return b if hostnames.covers(a, b) else a


def _short(loc: Location) -> str:
    return f"{loc.kind} {loc.namespace}/{loc.name} ({loc.file} doc {loc.document})"
