"""Mesh-wide resources (identical for every proxy of a mode): outbound clusters, their endpoints, the
outbound virtual hosts and the Dapr invoke routes. Built once per config change, memoized per IR input."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from envoy_data_plane.envoy.config.route import v3 as rte

from xds import types
from xds.model.mesh import MeshConfig
from xds.model.resources import DestinationRule, Resiliency, Service, VirtualService
from xds.translate.cluster import effective_policy, outbound_cluster_bytes
from xds.translate.dapr_routes import app_ids, internal_invoke_routes_bytes, invoke_routes_bytes
from xds.translate.locality_lb import cla_for
from xds.translate.pack import Memo, digest, field_bytes, field_number, repeated_field, varint
from xds.translate.resiliency import applicable, invoke_policy
from xds.translate.route import alias_virtual_hosts, block_all_vhost, delegates_of, virtual_host_bytes
from xds.translate.scoped_routes import ALIAS_TABLE, route_tables_of, scope_keys, scope_resource
from xds.translate.sidecar_scope import ScopedView
from xds.types import Layered, Resource, type_version

_RC_NAME = field_number(rte.RouteConfiguration, "name")
_RC_VHOSTS = field_number(rte.RouteConfiguration, "virtual_hosts")
_VH_ROUTES = field_number(rte.VirtualHost, "routes")
_BLOCK_ALL = bytes(block_all_vhost())
# validate_clusters: false (istiod); encoded once and put in every route configuration header
_RC_FLAGS = bytes(
    rte.RouteConfiguration(validate_clusters=False, max_direct_response_body_size_bytes=1048576)
)


def _all_scope_keys(svc: Service) -> tuple[str, ...]:
    keys, short = scope_keys(svc)
    return (*keys, short) if short else keys


def _vhost_host(vhost: rte.VirtualHost) -> str:
    return vhost.name.rpartition(":")[0]


@dataclass(frozen=True)
class TypeSet:
    """One type's resources, frozen, with the Snapshot-compatible version. Shared by identity."""

    resources: MappingProxyType[str, Resource]
    version: str

    @classmethod
    def of(cls, items: list[Resource]) -> TypeSet:
        mapping = {r.name: r for r in items}
        return cls(MappingProxyType(mapping), type_version(mapping))

    def extended(self, extra: list[Resource]) -> TypeSet:
        """This set plus a few per-proxy resources, without rehashing or copying the shared part: the
        version is a hash of the shared version and the extras' names and versions (content-derived)."""
        own: dict[str, Resource] = {}
        for r in extra:
            if r.name in self.resources or r.name in own:
                raise ValueError(f"duplicate {types.short_name(r.type_url)} resource name {r.name!r}")
            own[r.name] = r
        parts = [self.version.encode()] + [f"\0{r.name}\0{r.version}".encode() for r in extra]
        return TypeSet(Layered(self.resources, own), digest(*parts))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Blob:
    """Pre-serialized repeated-field bytes (vhosts or routes) with a digest for cheap versions."""

    body: bytes
    digest: str


def _route_inputs(
    vs: VirtualService | None, config: MeshConfig, memo: Memo | None = None
) -> tuple[object, ...]:
    if vs is None:
        return (None,)
    delegates = delegates_of(vs, config)

    def destinations() -> list[str]:
        hosts = {d.destination.host for v in (vs, *delegates) for r in v.http for d in r.route}
        hosts |= {m.destination.host for v in (vs, *delegates) for r in v.http for m in r.mirrors}
        return sorted(hosts)

    # rules too: a DR's consistentHash becomes the route's hash_policy
    ordered = (
        destinations() if memo is None else memo.get(("dests", vs.meta.ref), (vs, *delegates), destinations)
    )
    services = (config.service_by_host.get(h) for h in ordered)
    return (vs, delegates, *services, *map(config.rule_by_host.get, ordered))


class MeshBuilder:
    def __init__(self, memo: Memo) -> None:
        self.memo = memo
        self._clusters: TypeSet | None = None
        self._endpoints: TypeSet | None = None
        # once per build(), keyed by kind first: blobs, (clusters, endpoints) sets, route-table maps...
        self._this_build: dict[tuple[object, ...], Any] = {}
        self._inputs: dict[str, tuple[object, ...]] = {}
        self._scoped: dict[tuple[str, str], tuple[TypeSet, TypeSet]] = {}

    def begin(self) -> None:
        self._this_build = {}
        self._inputs = {}

    def _route_inputs(self, svc: Service, config: MeshConfig) -> tuple[object, ...]:
        """Memo inputs of everything derived from a host's routes; computed once per host per build."""
        found = self._inputs.get(svc.host)
        if found is None:
            vs = config.mesh_routes_by_host.get(svc.host)
            found = self._inputs[svc.host] = (svc, *_route_inputs(vs, config, self.memo))
        return found

    # ---- CDS + EDS --------------------------------------------------------------------------------

    def _service_clusters(
        self, svc: Service, config: MeshConfig, view: ScopedView | None = None
    ) -> tuple[list[Resource], list[Resource]]:
        rule = config.rule_by_host.get(svc.host) if view is None else view.rule_for(svc.host)

        def build() -> tuple[list[Resource], list[Resource]]:
            clusters: list[Resource] = []
            endpoints: list[Resource] = []
            subsets = [("", None)] + [(s.name, s.labels) for s in (rule.subsets if rule else ())]
            for port in svc.ports:
                for subset, labels in subsets:
                    policy = effective_policy(rule, subset, port.number)
                    name, body = outbound_cluster_bytes(svc, port, subset, policy)
                    clusters.append(Resource.make(types.CLUSTER, name, body))
                    if svc.resolution == "STATIC":  # CLA for a proxy without locality (locality_lb.py)
                        cla = cla_for(name, svc, port, labels, policy)
                        endpoints.append(Resource.make(types.ENDPOINT, name, cla))
            return clusters, endpoints

        slot = (
            ("cds", svc.host)
            if rule is config.rule_by_host.get(svc.host)
            else ("cds", svc.host, rule.meta.ref if rule else "")
        )
        return self.memo.get(slot, (svc, rule), build)

    def scoped_clusters(self, config: MeshConfig, view: ScopedView) -> tuple[TypeSet, TypeSet]:
        """CDS/EDS of one Sidecar/exportTo scope; the mesh-wide sets when the scope sees everything."""
        assert self._clusters is not None and self._endpoints is not None
        if view.is_whole_mesh:
            return self._clusters, self._endpoints
        key = ("scoped-cds", view.scope.key)
        found = self._this_build.get(key)
        if found is None:
            clusters: list[Resource] = []
            endpoints: list[Resource] = []
            for svc in view.services:
                c, e = self._service_clusters(svc, config, view)
                clusters += c
                endpoints += e
            previous = self._scoped.get(view.scope.key, (None, None))
            found = (self._reuse(previous[0], clusters), self._reuse(previous[1], endpoints))
            self._scoped[view.scope.key] = found
            self._this_build[key] = found
        return found

    def clusters_and_endpoints(self, config: MeshConfig) -> tuple[TypeSet, TypeSet]:
        def walk() -> tuple[TypeSet, TypeSet]:
            clusters: list[Resource] = []
            endpoints: list[Resource] = []
            for svc in config.services:
                c, e = self._service_clusters(svc, config)
                clusters += c
                endpoints += e
            return self._reuse(self._clusters, clusters), self._reuse(self._endpoints, endpoints)

        # a service's clusters depend on it and its DestinationRule only
        inputs = (*config.services, None, *config.destination_rules)
        self._clusters, self._endpoints = self.memo.group(("cds-all",), inputs, walk)
        return self._clusters, self._endpoints

    @staticmethod
    def _reuse(previous: TypeSet | None, items: list[Resource]) -> TypeSet:
        """Keep the previous TypeSet object when nothing changed, so proxies can compare by identity."""
        if previous is not None and len(previous.resources) == len(items):
            if all(previous.resources.get(r.name) is r for r in items):
                return previous
        return TypeSet.of(items)

    # ---- outbound virtual hosts (RDS) ---------------------------------------------------------------

    def _vhost(
        self, svc: Service, config: MeshConfig, namespace: str, view: ScopedView | None = None
    ) -> list[bytes]:
        in_ns = svc.namespace == namespace
        # exportTo may hide the mesh-wide VS, or pick another DR (hash policy), for this namespace
        rcfg = config if view is None else view.route_config
        vs = rcfg.mesh_routes_by_host.get(svc.host)
        inputs = self._route_inputs(svc, config) if rcfg is config else (svc, *_route_inputs(vs, rcfg))

        def build() -> list[bytes]:
            out = []
            for i, port in enumerate(p for p in svc.ports if p.is_http):
                out.append(virtual_host_bytes(svc, port, vs, rcfg, namespace if in_ns else "", i == 0))
            return out

        slot = ("vhost", svc.host, in_ns) if rcfg is config else ("vhost", svc.host, in_ns, *_refs(inputs))
        return self.memo.get(slot, inputs, build)

    def outbound_vhosts(self, config: MeshConfig, namespace: str, view: ScopedView | None = None) -> Blob:
        key = ("vhosts", namespace) if view is None else ("vhosts", *view.scope.key)
        found = self._this_build.get(key)
        if found is None:
            found = self._this_build[key] = self._outbound_vhosts(config, namespace, view)
        return found

    def _outbound_vhosts(self, config: MeshConfig, namespace: str, view: ScopedView | None = None) -> Blob:
        parts: list[bytes] = []
        services = config.services if view is None else view.services
        for svc in services:
            parts += self._vhost(svc, config, namespace, view)
        rcfg = config if view is None else view.route_config
        # VirtualService hosts that are no registry service (istiod: domains of their own virtual host)
        parts += [bytes(v) for v in alias_virtual_hosts(rcfg, services, namespace)]
        parts.append(_BLOCK_ALL)

        def build() -> Blob:
            body = repeated_field(_RC_VHOSTS, parts)
            return Blob(body, digest(body))

        slot = ("vhosts", namespace) if view is None else ("vhosts", *view.scope.key)
        return self.memo.get(slot, tuple(parts), build)

    # ---- scoped outbound routing (SRDS, xds.translate.scoped_routes) ---------------------------------------

    def _tables_of(self, config: MeshConfig, view: ScopedView | None) -> dict[str, str]:
        """host -> route table name (xds.translate.scoped_routes.route_tables_of), once per build and view."""
        key = ("tables-of",) if view is None else ("tables-of", *view.scope.key)
        found = self._this_build.get(key)
        if found is None:
            services = config.services if view is None else view.services
            http = [s for s in services if any(p.is_http for p in s.ports)]
            found = self._this_build[key] = self.memo.get(
                key, tuple(s.host for s in http), lambda: route_tables_of(http)
            )
        return found

    def service_route_tables(self, config: MeshConfig, view: ScopedView | None = None) -> TypeSet:
        """The route tables of the services' virtual hosts (`outbound|<namespace>|<n>`), shared by every
        scoped proxy of the same view (view None: the whole mesh; else a Sidecar/exportTo scope, whose
        VirtualServices and DestinationRules may differ)."""
        key = ("svc-rcs",) if view is None else ("svc-rcs", *view.scope.key)
        found = self._this_build.get(key)
        if found is None:
            services = config.services if view is None else view.services
            tables = self._tables_of(config, view)
            members: dict[str, list[list[bytes]]] = {}
            for svc in services:
                vhosts = self._vhost(svc, config, svc.namespace, view)
                if vhosts:
                    members.setdefault(tables[svc.host], []).append(vhosts)
            items = [self._route_table(name, parts, view) for name, parts in members.items()]
            aliases, _scopes = self._alias_scopes(config, view)
            items += [aliases] if aliases is not None else []
            found = self._this_build[key] = self.memo.get(key, tuple(items), lambda: TypeSet.of(items))
        return found

    def _alias_scopes(
        self, config: MeshConfig, view: ScopedView | None
    ) -> tuple[Resource | None, list[Resource]]:
        """VirtualService hosts that are no registry service (e.g. `uk.bookinfo.com` bound to `mesh`): the
        virtual hosts the single table holds for them, in one table `outbound|aliases`, and a scope per host
        pointing at it. A host that is a service's scope key (a short name included) keeps the service's."""
        key = ("aliases",) if view is None else ("aliases", *view.scope.key)
        found = self._this_build.get(key)
        if found is None:
            services = config.services if view is None else view.services
            rcfg = config if view is None else view.route_config
            vhosts = alias_virtual_hosts(rcfg, services, "")
            if vhosts:
                service_keys = {k for svc in services for k in _all_scope_keys(svc)}
                vhosts = [v for v in vhosts if _vhost_host(v) not in service_keys]
            table: Resource | None = None
            scopes: list[Resource] = []
            if vhosts:
                body = repeated_field(_RC_VHOSTS, [*(bytes(v) for v in vhosts), _BLOCK_ALL])
                table = route_config_resource(ALIAS_TABLE, Blob(body, digest(body)))
                hosts = sorted({_vhost_host(v) for v in vhosts})
                scopes = [scope_resource(h, ALIAS_TABLE) for h in hosts]
            found = self._this_build[key] = (table, scopes)
        return found

    def _route_table(self, name: str, parts: list[list[bytes]], view: ScopedView | None) -> Resource:
        # each service's vhosts of its own namespace (short names too): a scope only sends a short name
        # here from that namespace, so the superset of domains is safe for every client
        def build() -> Resource:
            body = repeated_field(_RC_VHOSTS, [*(v for vhosts in parts for v in vhosts), _BLOCK_ALL])
            return route_config_resource(name, Blob(body, digest(body)))

        slot = ("svc-rc", name) if view is None else ("svc-rc", name, *view.scope.key)
        return self.memo.get(slot, tuple(parts), build)

    def scopes(self, config: MeshConfig, namespace: str, view: ScopedView | None = None) -> TypeSet:
        """The ScopedRouteConfigurations a proxy in `namespace` sees: the namespace-free names of every
        service (in its view), plus the short names of the services in its own namespace."""
        key = ("srds", namespace) if view is None else ("srds", namespace, *view.scope.key)
        found = self._this_build.get(key)
        if found is None:
            services = config.services if view is None else view.services
            tables = self._tables_of(config, view)

            def walk() -> TypeSet:
                items: list[Resource] = []
                for svc in services:
                    table = tables.get(svc.host)
                    if table is not None:
                        shared, short = self._service_scopes(svc, table)
                        items += shared
                        if short is not None and svc.namespace == namespace:
                            items.append(short)
                items += alias_scopes
                return self.memo.get(key, tuple(items), lambda: TypeSet.of(items))

            _table, alias_scopes = self._alias_scopes(config, view)
            found = self._this_build[key] = self.memo.group(
                ("srds-all", *key[1:]), (tables, *alias_scopes, *services), walk
            )
        return found

    def _service_scopes(self, svc: Service, table: str) -> tuple[list[Resource], Resource | None]:
        def build() -> tuple[list[Resource], Resource | None]:
            keys, short = scope_keys(svc)
            return (
                [scope_resource(k, table) for k in keys],
                scope_resource(short, table) if short else None,
            )

        return self.memo.get(("scopes", svc.host, svc.namespace), (svc.host, table), build)

    # ---- Dapr invoke routes ------------------------------------------------------------------------

    def _dapr_routes(
        self,
        svc: Service,
        config: MeshConfig,
        namespace: str,
        grpc: bool,
        view: ScopedView | None = None,
        token: str = "",
        resiliencies: tuple[Resiliency, ...] = (),
        scopes: bool = False,
    ) -> tuple[bytes, bytes]:
        in_ns = svc.namespace == namespace
        policy = invoke_policy(resiliencies, app_ids(svc, svc.namespace))
        if scopes and policy is None:  # through the outbound scopes: independent of the VirtualService

            def internal() -> tuple[bytes, bytes]:
                prefix, header = internal_invoke_routes_bytes(svc, namespace if in_ns else "", grpc, token)
                return repeated_field(_VH_ROUTES, prefix), repeated_field(_VH_ROUTES, header)

            return self.memo.get(("dapr-int", svc.host, in_ns, grpc, token), (svc,), internal)
        rcfg = config if view is None else view.route_config  # the VS/DR this namespace sees
        if rcfg is config:
            inputs = self._route_inputs(svc, config)
        else:
            inputs = (svc, *_route_inputs(rcfg.mesh_routes_by_host.get(svc.host), rcfg))

        def build() -> tuple[bytes, bytes]:
            prefix, header = invoke_routes_bytes(svc, rcfg, namespace if in_ns else "", grpc, token, policy)
            return repeated_field(_VH_ROUTES, prefix), repeated_field(_VH_ROUTES, header)

        slot = ("dapr", svc.host, in_ns, grpc, token, policy) + (() if rcfg is config else _refs(inputs))
        return self.memo.get(slot, (*inputs, policy), build)

    def dapr_routes(
        self,
        config: MeshConfig,
        namespace: str,
        grpc: bool,
        view: ScopedView | None = None,
        token: str = "",
        callers: tuple[str, ...] = (),
        scopes: bool = False,
    ) -> Blob:
        """Invoke-by-path routes first, then dapr-app-id header routes (capability route added per proxy).
        token: DAPR_API_TOKEN the routes require in dapr-api-token (and strip); "" = none.
        callers: app ids calling through this site; picks the Dapr Resiliency documents that apply.
        scopes: the proxy routes outbound by scopes; invocation re-enters them (translate.scoped_routes)."""
        chosen = applicable(config.resiliencies, namespace, callers)
        refs = tuple(r.meta.ref for r in chosen)  # equal choices share one route configuration
        # namespace with a view too: a node-mode app may live in another namespace than its proxy
        key = (*(view.scope.key if view is not None else ()), namespace, grpc, token, refs, scopes)
        found = self._this_build.get(("dapr", *key))
        if found is not None:
            return found
        services = config.services if view is None else view.services

        def walk() -> Blob:
            pairs = [
                self._dapr_routes(svc, config, namespace, grpc, view, token, chosen, scopes)
                for svc in services
            ]

            def build() -> Blob:
                body = b"".join(p for p, _ in pairs) + b"".join(h for _, h in pairs)
                return Blob(body, digest(body))

            return self.memo.get(("dapr-routes", *key), tuple(x for p in pairs for x in p), build)

        if scopes and view is None and not chosen:  # then each service's routes depend on it alone
            found = self.memo.group(("dapr-all", *key), tuple(services), walk)
        else:
            found = walk()
        self._this_build[("dapr", *key)] = found
        return found


def _refs(inputs: tuple[object, ...]) -> tuple[str, ...]:
    """Names of the VirtualServices and DestinationRules among memo inputs: a slot per distinct choice."""
    return tuple(x.meta.ref for x in inputs if isinstance(x, VirtualService | DestinationRule))


def route_config_resource(name: str, vhosts: Blob) -> Resource:
    """RouteConfiguration = name + flags + pre-serialized vhosts; version from the vhosts digest."""
    header = field_bytes(_RC_NAME, name.encode()) + _RC_FLAGS
    return Resource(
        types.ROUTE, name, b"".join((header, vhosts.body)), digest(header, vhosts.digest.encode())
    )


def single_vhost_route_config(name: str, vhost_header: bytes, routes: Blob, tail: bytes) -> Resource:
    """A RouteConfiguration with one vhost whose routes are routes.body followed by tail (more routes)."""
    size = len(vhost_header) + len(routes.body) + len(tail)
    body = b"".join(
        (
            field_bytes(_RC_NAME, name.encode()),
            _RC_FLAGS,
            varint(_RC_VHOSTS << 3 | 2),
            varint(size),
            vhost_header,
            routes.body,
            tail,
        )
    )  # one copy of the (large) shared routes
    version = digest(vhost_header, tail, routes.digest.encode(), name.encode())
    return Resource(types.ROUTE, name, body, version)
