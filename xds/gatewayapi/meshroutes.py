"""GAMMA mesh routes (GEP-1426, GEP-1294): an HTTPRoute or GRPCRoute whose parentRef is a `Service` programs
the outbound traffic of every mesh client to that Service, as istiod converts it
(pilot/pkg/config/kube/gateway/route_collections.go): a VirtualService bound to `mesh` whose host is the
Service's registry host `NAME.NS.svc.cluster.local`, so sidecars, node proxies and proxyless clients all
get it through the path Istio VirtualServices take.

- **Producer routes** (the route in the Service's namespace) apply to clients of every namespace: their
  VirtualService is exported everywhere.
- **Consumer routes** (the route in another namespace) apply only to clients of the route's namespace: their
  VirtualService lives there and is exported to it only, which makes it win over the producer's for those
  clients (a namespace's own exported VirtualServices come first, as in istiod's VirtualServicesForGateway).
- The routes of one namespace for one Service are merged into one VirtualService in the spec's precedence
  order. A parentRef `port` (or `sectionName`, the Service port's name) limits the route to that port: its
  matches carry the port, and the Service's other ports keep their default route.
- Backends of mesh routes need no ReferenceGrant (GEP-1294: mesh routes augment Services, they expose
  nothing new); `hostnames` carry no meaning for the mesh, so a mesh route with hostnames is not accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from xds.diagnostics import Location
from xds.gatewayapi import objects
from xds.gatewayapi.grpcroutes import convert_grpc_rule
from xds.gatewayapi.invalid import GATEWAY_API_ORIGIN
from xds.gatewayapi.l4routes import convert_l4_rule
from xds.gatewayapi.routes import DOMAIN_SUFFIX, Resolver, RuleOutcome, SortKey, convert_rule
from xds.gatewayapi.status import Condition, failed
from xds.model.resources import HTTPRoute, Meta, Service, VirtualService

MESH_GATEWAY = "mesh"  # the Istio gateway name of sidecars: a VirtualService bound to it routes mesh clients
CORE_GROUPS = ("", "core")  # the core API group, as written in parentRefs


def is_service_parent(ref: objects.ParentRef) -> bool:
    return ref.group in CORE_GROUPS and ref.kind == "Service"


def service_host(ref: objects.ParentRef) -> str:
    return f"{ref.name}.{ref.namespace}.{DOMAIN_SUFFIX}"


class MeshResolver(Resolver):
    """Backends of mesh routes: any namespace, no ReferenceGrant needed (GEP-1294)."""

    def permitted(self, kind: str, namespace: str, ref: objects.BackendRef, target: str) -> bool:
        return True


def rule_outcomes(route: objects.Route, resolver: Resolver) -> list[RuleOutcome]:
    """Each rule of the route converted (rule order)."""
    if isinstance(route, objects.GRPCRoute):
        return [convert_grpc_rule(route, rule, resolver) for rule in route.rules]
    if isinstance(route, objects.L4Route):
        return [convert_l4_rule(route, rule, resolver) for rule in route.rules]
    return [convert_rule(route, rule, resolver) for rule in route.rules]


@dataclass(frozen=True)
class Target:
    """Where a mesh route attaches: the Service's host, and the port it is limited to (None: every port)."""

    host: str
    port: int | None


@dataclass
class _Group:
    """The routes of one namespace for one Service: one VirtualService."""

    namespace: str
    host: str
    producer: bool
    location: Location
    created: str
    routes: list[tuple[SortKey, HTTPRoute]] = field(default_factory=list)
    served: set[tuple[str, int | None]] = field(default_factory=set)  # (route, port) already added


class MeshRoutes:
    def __init__(self, services: Mapping[str, Service], grants: tuple[objects.ReferenceGrant, ...]) -> None:
        self.services = services
        self.resolver = MeshResolver(dict(services), grants)
        self.groups: dict[tuple[str, str], _Group] = {}

    def target(self, route: objects.Route, ref: objects.ParentRef) -> Target | Condition:
        """The Service port the route attaches to, or why it does not (Accepted False)."""
        if isinstance(route, objects.L4Route):
            msg = f"{route.meta.kind}s attached to a Service (mesh TCP/TLS routes) are not supported"
            return failed("Accepted", "UnsupportedValue", msg)
        host = service_host(ref)
        found = self.services.get(host)
        if found is None:  # istiod's answer (ParentErrorNotAccepted)
            return failed("Accepted", "NoMatchingParent", f"parent service: {ref.name!r} not found")
        if route.hostnames:
            msg = "hostnames must be empty for a route attached to a Service (GEP-1294: mesh routes match "
            msg += "the Service, not a Host header); match the Host header with a header match instead"
            return failed("Accepted", "UnsupportedValue", msg)
        port: int | None = ref.port
        if ref.port is not None and found.port(ref.port) is None:
            return failed("Accepted", "NoMatchingParent", f"port {ref.port} not found")
        if ref.section:
            named = next((p for p in found.ports if p.name == ref.section), None)
            if named is None or (ref.port is not None and named.number != ref.port):
                return failed("Accepted", "NoMatchingParent", f"sectionName {ref.section!r} not found")
            port = named.number
        return Target(host, port)

    def serve(self, route: objects.Route, target: Target, kept: list[RuleOutcome]) -> None:
        """Add the accepted route's rules to the VirtualService of its namespace for the Service."""
        ns = route.meta.namespace
        svc = self.services[target.host]
        key = (ns, target.host)
        group = self.groups.get(key)
        if group is None:
            where = route.meta.location
            group = self.groups[key] = _Group(ns, target.host, ns == svc.namespace, where, route.meta.created)
        group.created = min(group.created, route.meta.created)
        if (route.meta.ref, target.port) in group.served:
            return  # two parentRefs naming the same port: its routes once
        group.served.add((route.meta.ref, target.port))
        for outcome in kept:
            for sort_key, http in outcome.routes:
                if target.port is not None:
                    http = replace(http, matches=tuple(replace(m, port=target.port) for m in http.matches))
                group.routes.append((sort_key, http))

    def virtual_services(self) -> list[VirtualService]:
        out = []
        for (ns, host), group in sorted(self.groups.items()):
            name = f"gateway-api.mesh.{host}"
            where = Location(group.location.file, group.location.document, "VirtualService", ns, name)
            routes = [http for _, http in sorted(group.routes, key=lambda e: e[0])]
            out.append(
                VirtualService(
                    meta=Meta("VirtualService", ns, name, where, origin=GATEWAY_API_ORIGIN),
                    hosts=(host,),
                    gateways=(MESH_GATEWAY,),
                    http=tuple(replace(r, index=i) for i, r in enumerate(routes)),
                    export_to=() if group.producer else (ns,),
                    created=group.created,
                )
            )
        return out
