"""SnapshotBuilder: MeshConfig + proxies -> one Snapshot per proxy.

Mesh-wide resources are built once per config change and the very same Resource objects (and per-type
maps) are shared by every proxy; only listeners, inbound/capability clusters and route configuration
names are per proxy. Everything is memoized on the IR objects it derives from and pruned to the live set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, partial
from types import MappingProxyType

from envoy_data_plane.envoy.config.route import v3 as rte

from xds import types
from xds.diagnostics import Diagnostic
from xds.model.mesh import MeshConfig
from xds.proxy import AppBinding, ProxyIdentity, ProxyMode
from xds.translate.cluster import static_cluster_bytes
from xds.translate.dapr_routes import CAPABILITIES_GRPC, CAPABILITIES_HTTP, capabilities_route
from xds.translate.dapr_sites import (
    DaprSite,
    app_capability_clusters,
    app_token_headers,
    dapr_sites,
    token_reject_bytes,
)
from xds.translate.envoy_core import inbound_cluster_name, split_host_port
from xds.translate.gateway import credential_names, gateway_resources
from xds.translate.invoke_breaker import breaker_resources, breaker_targets
from xds.translate.listener import (
    inbound_route_config,
    outbound_route_name,
    proxy_listener_bytes,
)
from xds.translate.locality_per_proxy import LocalityEndpoints
from xds.translate.mesh import Blob, MeshBuilder, TypeSet, route_config_resource, single_vhost_route_config
from xds.translate.normalize import DEFAULT_PATH_NORMALIZATION, PathNormalization, parse_path_normalization
from xds.translate.pack import Memo, field_number, repeated_field, resource
from xds.translate.proxyless import (
    proxyless_clusters,
    proxyless_listeners,
    proxyless_routes,
    proxyless_server_listeners,
    weighted_localities,
)
from xds.translate.resiliency import site_callers
from xds.translate.scoped_routes import MODES, internal_clusters, wants_scopes
from xds.translate.security.proxy import SecurityTranslator
from xds.translate.security.resolved import NO_INPUTS, SecurityInputs
from xds.translate.security.upstream import any_client_tls
from xds.translate.sidecar import allow_any_vhosts, allows_any, sidecar_resources
from xds.translate.sidecar_scope import ScopedView, scope_for
from xds.translate.source_matches import SourceFilter
from xds.translate.tcp import tcp_listener_inputs, tcp_listeners
from xds.translate.tracing import collector_clusters, proxy_tracing, traced_listeners
from xds.types import Resource, Snapshot

log = logging.getLogger(__name__)
_EMPTY = TypeSet.of([])


def own_cluster_specs(proxy: ProxyIdentity) -> list[tuple[str, str, int, bool, int | None]]:
    """(name, address, port, http2, ready_port) of the proxy's STATIC clusters: its apps and the capability
    service; ready_port (capability clusters): the service's HTTP port, where Envoy checks its readiness."""
    out: list[tuple[str, str, int, bool, int | None]] = []
    for app in proxy.apps:
        if app.app_port is not None and app.inbound_port is not None:
            http2 = app.app_protocol.lower() == "grpc"
            out.append(
                (inbound_cluster_name(app.app_port, app.name), app.app_address, app.app_port, http2, None)
            )
    capability = [
        (name, target, http2)
        for name, target, http2 in (
            (CAPABILITIES_HTTP, proxy.capabilities_http, False),
            (CAPABILITIES_GRPC, proxy.capabilities_grpc, True),
        )
        if target
    ] + app_capability_clusters(proxy)  # node mode: each app's own runtime
    http_targets = {name: target for name, target, http2 in capability if not http2}
    for name, target, http2 in capability:
        host, port = split_host_port(target)
        # a gRPC cluster is checked on the HTTP API of the same runtime (same name suffix, same host)
        http_name = name.replace(CAPABILITIES_GRPC, CAPABILITIES_HTTP, 1) if http2 else name
        http_host, http_port = (
            split_host_port(http_targets[http_name]) if http_name in http_targets else ("", 0)
        )
        out.append((name, host, port, http2, http_port if http_host == host else None))
    return out


def _own_clusters(proxy: ProxyIdentity) -> list[Resource]:
    return [
        Resource.make(types.CLUSTER, name, static_cluster_bytes(name, host, port, http2, ready))
        for name, host, port, http2, ready in own_cluster_specs(proxy)
    ]


def _inbound_route_config(proxy: ProxyIdentity, app: AppBinding) -> rte.RouteConfiguration:
    rc = inbound_route_config(app)
    rc.virtual_hosts[0].routes[0].request_headers_to_add = app_token_headers(proxy, app)  # APP_API_TOKEN
    return rc


def _own_routes(proxy: ProxyIdentity) -> list[Resource]:
    return [
        resource(types.ROUTE, f"inbound|{a.inbound_port}||", _inbound_route_config(proxy, a))
        for a in proxy.apps
        if a.app_port is not None and a.inbound_port is not None and not a.is_tcp  # TCP: no routes
    ]


@cache
def _dapr_tail(site: DaprSite) -> bytes:
    """Routes after the invoke routes: the token's 401s, then the capability-service fallback."""
    routes = list(token_reject_bytes(site.token, site.grpc))
    if site.target:
        routes.append(bytes(capabilities_route(site.cluster)))
    return repeated_field(field_number(rte.VirtualHost, "routes"), routes)


@dataclass
class _ProxyState:
    """Last per-type sets of one proxy, reused when their inputs are the same objects."""

    parts: dict[str, tuple[tuple[object, ...], TypeSet]] = field(default_factory=dict)


class SnapshotBuilder:
    """Holds the memo; one per control plane. build() is synchronous and CPU-bound (run it off the loop).

    Pure: it reads no file and issues no certificate. What it needs of either comes in build()'s `inputs`
    (xds.pipeline.SnapshotBuilder resolves them: the CA's certificates, Gateway credential files)."""

    def __init__(
        self,
        trust_domain: str | None = None,
        route_tables: str = "auto",
        path_normalization: PathNormalization | str = DEFAULT_PATH_NORMALIZATION,
        agent_sds: bool = False,
    ) -> None:
        """trust_domain: the mesh CA's; given = mesh mTLS (SDS, auto-mTLS), None = no CA.
        route_tables: "single" outbound table, "scoped" per-service tables (SRDS), or "auto" (scoped from
        xds.translate.scoped_routes.AUTO_MIN_SERVICES services on); see xds/translate/scoped_routes.py.
        path_normalization: meshConfig.pathNormalization of every HTTP listener (xds/translate/normalize)."""
        if route_tables not in MODES:
            raise ValueError(f"route_tables: {route_tables!r} is not one of {', '.join(MODES)}")
        self.route_tables = route_tables
        self.normalization = parse_path_normalization(str(path_normalization))
        self._scopes = False  # this build routes by scopes (decided per build from the config)
        self._secure = False  # this build has client TLS on outbound clusters (CA on, or a DR sets tls)
        self.memo = Memo()
        self.mesh = MeshBuilder(self.memo)
        self.security = SecurityTranslator(self.memo, trust_domain, self.normalization, agent_sds)
        self.warnings: list[Diagnostic] = []
        self._states: dict[str, _ProxyState] = {}
        self._views: dict[tuple[str, str], ScopedView] = {}
        self._scoping = False
        self._sources = SourceFilter()
        self.locality = LocalityEndpoints(self.memo)
        self._meshes: dict[object, MeshBuilder] = {None: self.mesh}
        self._inputs = NO_INPUTS

    def _view(self, config: MeshConfig, proxy: ProxyIdentity) -> ScopedView | None:
        """The proxy's Sidecar/exportTo view; None when the config has neither (everything is shared)."""
        if not self._scoping:
            return None
        scope = scope_for(config, proxy)
        found = self._views.get(scope.key)
        if found is None or found.scope != scope:
            found = self._views[scope.key] = ScopedView(config, scope)
        return found

    def build(
        self,
        config: MeshConfig,
        proxies: Iterable[ProxyIdentity],
        changed_at: float = 0.0,
        config_version: str = "",
        inputs: SecurityInputs = NO_INPUTS,
    ) -> dict[str, Snapshot]:
        """inputs: the certificates and credentials resolved for this build (none: no secrets served)."""
        self.memo.start()
        self._inputs = inputs
        self.warnings = []
        out: dict[str, Snapshot] = {}
        # one group unless VirtualServices match on the client (sourceLabels): then one per distinct set
        # of applicable matches, each with its MeshBuilder (per-build caches) over the shared memo
        meshes: dict[object, MeshBuilder] = {}
        for sig, group_config, members in self._sources.groups(config, proxies):
            self.mesh = meshes[sig] = self._meshes.get(sig) or MeshBuilder(self.memo)
            self.mesh.begin()
            self._views = {}
            self._scoping = (
                bool(group_config.sidecars)
                or any(s.export_to for s in config.services)
                or any(v.export_to for v in config.virtual_services)
                or any(d.export_to for d in config.destination_rules)
            )
            clusters, endpoints = self.mesh.clusters_and_endpoints(group_config)
            self._scopes = wants_scopes(self.route_tables, group_config)
            # once per build: hashing every DestinationRule per proxy cost ~1 ms a proxy at 1,000 services
            self._secure = self.security.trust_domain is not None or any_client_tls(group_config)
            for proxy in members:
                out[proxy.id] = self._proxy_snapshot(
                    group_config, proxy, clusters, endpoints, changed_at, config_version
                )
        self._meshes = meshes
        self.memo.prune()
        return out

    def forget(self, proxy_id: str) -> None:
        """Drop the per-proxy state of a proxy that disconnected for good."""
        self._states.pop(proxy_id, None)

    def _typeset(
        self,
        proxy_id: str,
        type_url: str,
        inputs: tuple[object, ...],
        items: list[Resource],
        base: TypeSet | None = None,
    ) -> TypeSet:
        state = self._states.setdefault(proxy_id, _ProxyState())
        found = state.parts.get(type_url)
        if (
            found is not None
            and len(found[0]) == len(inputs)
            and all(a is b for a, b in zip(found[0], inputs, strict=True))
        ):
            return found[1]
        ts = base.extended(items) if base is not None else TypeSet.of(items)
        state.parts[type_url] = (inputs, ts)
        return ts

    def _secure_clusters(self, config: MeshConfig, clusters: TypeSet) -> TypeSet:
        if not self._secure:
            return clusters
        policies = self.security.policies(config)
        return self.memo.get(
            ("mtls-cds", clusters.version),
            (clusters, policies, config.services, config.destination_rules, self.security.endpoint_accounts),
            lambda: TypeSet.of(self.security.clusters(config, list(clusters.resources.values()))),
        )

    def _proxy_snapshot(
        self,
        config: MeshConfig,
        proxy: ProxyIdentity,
        clusters: TypeSet,
        endpoints: TypeSet,
        changed_at: float,
        config_version: str,
    ) -> Snapshot:
        view = self._view(config, proxy)
        if view is not None:
            clusters, endpoints = self.mesh.scoped_clusters(config, view)
        if proxy.mode is ProxyMode.PROXYLESS:  # a gRPC client's own xDS: api_listeners, no Envoy
            secure = self._secure_clusters(config, clusters)  # ISTIO_MUTUAL ones become grpcgen mTLS
            args = (config, proxy, view, secure, endpoints, changed_at, config_version)
            return self._proxyless_snapshot(*args)
        # Sidecar ingress/egress ports and ALLOW_ANY (a catch-all for unknown hosts) need the single table
        extras = sidecar_resources(self.memo, config, view, proxy, self.normalization)
        scopes = self._scopes and proxy.outbound_port is not None and proxy.mode is not ProxyMode.GATEWAY
        if scopes and view is not None:
            scopes = not (
                allows_any(view.scope.sidecar) or extras.listeners or extras.replaced or extras.routes
            )
        clusters = self._secure_clusters(config, clusters)  # auto-mTLS when the CA is on
        endpoints = self.locality.for_proxy(config, view, proxy, endpoints)  # locality LB priorities
        own_clusters = self.memo.get(("own-cds", proxy.id), (proxy,), lambda: _own_clusters(proxy))
        invoke_cds, invoke_eds = self._invoke_breakers(config, proxy, view, clusters, endpoints)
        if invoke_cds:  # Dapr circuit breakers: per-proxy copies of the targets' clusters
            own_clusters = own_clusters + invoke_cds
        if scopes and dapr_sites(proxy):  # Dapr invocation re-enters the outbound scopes
            own_clusters = own_clusters + list(internal_clusters())
        if invoke_eds:
            inputs_eds = (endpoints, *invoke_eds)
            endpoints = self._typeset(proxy.id, types.ENDPOINT, inputs_eds, invoke_eds, base=endpoints)
        listeners = self.memo.get(
            ("lds", proxy.id),
            (proxy, scopes),
            lambda: [
                Resource.make(types.LISTENER, n, b)
                for n, b in proxy_listener_bytes(proxy, scopes, self.normalization)
            ],
        )
        if proxy.tcp_ports and proxy.mode is not ProxyMode.GATEWAY:
            tview = view or ScopedView(config, scope_for(config, proxy))
            listeners = listeners + self.memo.get(
                ("lds-tcp", proxy.id),
                tcp_listener_inputs(tview, proxy),
                lambda: [
                    resource(types.LISTENER, x.name, x)
                    for x in tcp_listeners(config, tview, proxy, self.normalization)
                ],
            )
        if extras.listeners or extras.replaced:  # Sidecar ingress/egress ports, ALLOW_ANY
            listeners = [extras.replaced.get(r.name, r) for r in listeners] + list(extras.listeners)
            own_clusters = own_clusters + list(extras.clusters)
        self.warnings += extras.warnings
        listeners = self.security.listeners(config, proxy, listeners)  # mTLS chains, jwt_authn, RBAC
        routes = self._routes(config, proxy, view, scopes) + list(extras.routes)
        gateway_secrets: list[Resource] = []
        if proxy.mode is ProxyMode.GATEWAY:
            # credentials were read before the build (xds.pipeline); unchanged ones are the same objects
            names = sorted(credential_names(proxy, config))
            creds = {n: self._inputs.credentials[n] for n in names if n in self._inputs.credentials}
            why = {n: self._inputs.unavailable.get(n, "") for n in names if n not in creds}
            memo_key = (proxy, config.carried, config.inputs, config.virtual_services, config.services)
            gw = self.memo.get(
                ("gateway", proxy.id),
                (*memo_key, *creds.values(), *why.items()),
                lambda: gateway_resources(proxy, config, creds, lambda n: why.get(n, ""), self.normalization),
            )
            listeners, routes, gateway_secrets = gw.listeners, gw.routes, gw.secrets
            self.warnings += gw.warnings
        tracing = proxy_tracing(config, proxy)  # None unless a Telemetry/mesh config asks for tracing
        if tracing is not None:
            plain = listeners
            listeners = self.memo.get(
                ("tracing-lds", proxy.id), (tracing, *plain), lambda: traced_listeners(tracing, proxy, plain)
            )
            own_clusters = own_clusters + collector_clusters(config, tracing)
        cds = clusters
        if own_clusters:
            inputs = (clusters, *own_clusters)
            cds = self._typeset(proxy.id, types.CLUSTER, inputs, own_clusters, base=clusters)
        lds = self._typeset(proxy.id, types.LISTENER, tuple(listeners), listeners)
        srds = _EMPTY
        if scopes:  # the per-service tables are shared; the proxy's own (inbound, Dapr) extend them
            base = self.mesh.service_route_tables(config, view)
            rds = self._typeset(proxy.id, types.ROUTE, (base, *routes), routes, base=base)
            srds = self.mesh.scopes(config, proxy.namespace, view)
        else:
            rds = self._typeset(proxy.id, types.ROUTE, tuple(routes), routes)
        sets = {
            types.CLUSTER: cds,
            types.ENDPOINT: endpoints,
            types.LISTENER: lds,
            types.SCOPED_ROUTE: srds,
            types.ROUTE: rds,
        }
        secrets = self.security.secrets(proxy, self._inputs.workload_secrets) + gateway_secrets
        sds = self._typeset(proxy.id, types.SECRET, tuple(secrets), secrets) if secrets else _EMPTY
        sets[types.SECRET] = sds
        return Snapshot(
            MappingProxyType({t: sets[t].resources for t in types.TYPE_ORDER}),
            MappingProxyType({t: sets[t].version for t in types.TYPE_ORDER}),
            changed_at,
            config_version,
        )

    def _proxyless_snapshot(
        self,
        config: MeshConfig,
        proxy: ProxyIdentity,
        view: ScopedView | None,
        clusters: TypeSet,
        endpoints: TypeSet,
        changed_at: float,
        config_version: str,
    ) -> Snapshot:
        """istiod's grpcgen: LDS api_listeners and per-service RDS over the mesh's clusters and endpoints."""
        services = config.services if view is None else view.services
        rcfg = config if view is None else view.route_config
        listeners = self.memo.get(
            ("proxyless-lds", proxy.id),
            (proxy, services),
            lambda: [resource(types.LISTENER, x.name, x) for x in proxyless_listeners(services, proxy)],
        )
        policies, tls_available = self.security.policies(config), self.security.trust_domain is not None
        listeners = listeners + self.memo.get(  # a grpc.server(xds=True)'s inbound listeners
            ("proxyless-inbound", proxy.id),
            (proxy, config.services, policies, tls_available),
            lambda: [
                resource(types.LISTENER, x.name, x)
                for x in proxyless_server_listeners(config.services, proxy, policies, tls_available)
            ],
        )
        routes = self.memo.get(
            ("proxyless-rds", proxy.id),
            (proxy, services, rcfg.virtual_services, config.destination_rules),
            lambda: [resource(types.ROUTE, x.name, x) for x in proxyless_routes(services, rcfg, proxy)],
        )
        # a gRPC client resolves every cluster over EDS: a DNS (or passthrough) one has no endpoints there,
        # and its EDS cluster would name an assignment no snapshot holds (xds/controlplane/consistency.py)
        cds = self.memo.get(
            ("proxyless-cds", clusters.version, endpoints.version),
            (clusters, endpoints),
            lambda: TypeSet.of(
                [
                    resource(types.CLUSTER, c.name, c)
                    for c in proxyless_clusters(_over_eds(clusters, endpoints))
                ]
            ),
        )
        eds = self.memo.get(
            ("proxyless-eds", endpoints.version),
            (endpoints,),
            lambda: TypeSet.of(
                [
                    resource(types.ENDPOINT, n, weighted_localities(r.body))
                    for n, r in endpoints.resources.items()
                ]
            ),
        )
        sets = {
            types.CLUSTER: cds,
            types.ENDPOINT: eds,
            types.LISTENER: self._typeset(proxy.id, types.LISTENER, tuple(listeners), listeners),
            types.SCOPED_ROUTE: _EMPTY,
            types.ROUTE: self._typeset(proxy.id, types.ROUTE, tuple(routes), routes),
            types.SECRET: _EMPTY,
        }
        return Snapshot(
            MappingProxyType({t: sets[t].resources for t in types.TYPE_ORDER}),
            MappingProxyType({t: sets[t].version for t in types.TYPE_ORDER}),
            changed_at,
            config_version,
        )

    def _invoke_breakers(
        self,
        config: MeshConfig,
        proxy: ProxyIdentity,
        view: ScopedView | None,
        clusters: TypeSet,
        endpoints: TypeSet,
    ) -> tuple[list[Resource], list[Resource]]:
        services = config.services if view is None else view.services
        rcfg = config if view is None else view.route_config
        targets = breaker_targets(config, rcfg, services, proxy)  # () without a Resiliency: cheap
        if not targets:
            return [], []
        sources = tuple(m.get(t.source) for m in (clusters.resources, endpoints.resources) for t in targets)
        return self.memo.get(
            ("invoke-cds", proxy.id),
            (targets, *sources),
            lambda: breaker_resources(targets, clusters.resources, endpoints.resources),
        )

    def _routes(
        self, config: MeshConfig, proxy: ProxyIdentity, view: ScopedView | None, scopes: bool
    ) -> list[Resource]:
        """The proxy's own route tables (the shared per-service ones are added by the caller when scoped)."""
        if proxy.mode is ProxyMode.GATEWAY:
            return []
        ns = proxy.namespace
        out: list[Resource] = []
        if proxy.outbound_port is not None and not scopes:
            vhosts = self.mesh.outbound_vhosts(config, ns, view)
            if view is not None and allows_any(view.scope.sidecar):
                vhosts = allow_any_vhosts(self.memo, view, vhosts)
            name = outbound_route_name(proxy)
            out.append(
                self.memo.get(("rds", name, ns), (vhosts,), lambda: route_config_resource(name, vhosts))
            )
        out += self.memo.get(("rds-in", proxy.id), (proxy,), lambda: _own_routes(proxy))
        for site in dapr_sites(proxy):  # proxy-level Dapr listeners, then node-mode apps' own
            site_ns = site.namespace  # short app ids are relative to the app's namespace
            callers = site_callers(proxy, site.route)  # picks the Dapr Resiliency that applies
            blob = self.mesh.dapr_routes(config, site_ns, site.grpc, view, site.token, callers, scopes)
            tail = _dapr_tail(site)
            name = site.route
            out.append(
                self.memo.get(("rds", name, site_ns, tail), (blob,), partial(_dapr_rc, name, blob, tail))
            )
        return out


_DAPR_VHOST_HEADER = {
    name: bytes(rte.VirtualHost(name=name, domains=["*"])) for name in ("dapr_http", "dapr_grpc")
}


def _over_eds(clusters: TypeSet, endpoints: TypeSet) -> dict[str, Resource]:
    return {n: r for n, r in clusters.resources.items() if n in endpoints.resources}


def _dapr_rc(name: str, routes: Blob, tail: bytes) -> Resource:
    header = _DAPR_VHOST_HEADER["dapr_grpc" if name.startswith("dapr-grpc") else "dapr_http"]
    return single_vhost_route_config(name, header, routes, tail)
