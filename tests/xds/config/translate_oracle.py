"""The oracle: a second, naive translator (full betterproto2 messages, no memo, no byte concatenation,
Snapshot.build()) that tests check the shipped one against (the same decoded resources), and that
bench/translate_bench.py times for its 'naive' column. It lives in the tests, not in the package."""

from __future__ import annotations

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from envoy_data_plane.envoy.config.route import v3 as rte

from xds import types
from xds.model.mesh import MeshConfig
from xds.proxy import ProxyIdentity, ProxyMode
from xds.translate import resiliency
from xds.translate.builder import _own_routes, own_cluster_specs
from xds.translate.cluster import (
    DNS_RESOLUTIONS,
    dns_targets,
    effective_policy,
    policy_cluster,
    static_cluster,
)
from xds.translate.dapr_routes import app_ids, capabilities_route, invoke_routes
from xds.translate.dapr_sites import dapr_sites, token_reject_routes
from xds.translate.endpoint import eds_health, in_eds
from xds.translate.envoy_core import ADS, outbound_cluster_name, socket
from xds.translate.invoke_breaker import breaker_resources, breaker_targets
from xds.translate.listener import (
    outbound_route_name,
    proxy_listeners,
)
from xds.translate.locality_lb import depends_on_proxy, grouped, locality_cla, topology_labels
from xds.translate.pack import resource
from xds.translate.resiliency import site_callers
from xds.translate.route import alias_virtual_hosts, virtual_host
from xds.translate.sidecar import catch_all_vhost, sidecar_extras
from xds.translate.sidecar_scope import ScopedView, scope_for
from xds.translate.source_matches import config_for, proxy_labels
from xds.translate.tcp import tcp_listeners
from xds.types import Resource, Snapshot


def _clusters(config: MeshConfig, view: ScopedView, proxy: ProxyIdentity) -> list[Resource]:
    out: list[Resource] = []
    for svc in view.services:
        rule = view.rule_for(svc.host)
        subsets = [("", None)] + [(s.name, s.labels) for s in (rule.subsets if rule else ())]
        for port in svc.ports:
            for subset, labels in subsets:
                name = outbound_cluster_name(port.number, subset, svc.host)
                cluster = policy_cluster(effective_policy(rule, subset, port.number), port, svc.resolution)
                cluster.name = name
                listed = dns_targets(svc) if svc.resolution in DNS_RESOLUTIONS else svc.endpoints
                endpoints = [
                    e
                    for e in sorted(listed, key=lambda e: (e.address, e.port_for(port), e.weight))
                    if (labels is None or e.matches(labels)) and in_eds(e)
                ]
                cla = ep.ClusterLoadAssignment(
                    cluster_name=name,
                    endpoints=[
                        ep.LocalityLbEndpoints(
                            lb_endpoints=[
                                ep.LbEndpoint(
                                    endpoint=ep.Endpoint(address=socket(e.address, e.port_for(port))),
                                    load_balancing_weight=e.weight or None,
                                    health_status=eds_health(e.health),
                                )
                                for e in endpoints
                            ]
                        )
                    ]
                    if endpoints
                    else [],
                )
                policy = effective_policy(rule, subset, port.number)
                if svc.resolution == "STATIC" and (
                    depends_on_proxy(svc, port, labels, policy) or grouped(svc, port, labels)
                ):
                    mine = {**proxy_labels(proxy), **topology_labels(proxy.locality)}
                    cla = locality_cla(name, svc, port, labels, policy, proxy.locality, mine)
                if svc.resolution == "STATIC":
                    cluster.eds_cluster_config = clu.ClusterEdsClusterConfig(
                        eds_config=ADS, service_name=name
                    )
                    out.append(resource(types.ENDPOINT, name, cla))
                elif svc.resolution in DNS_RESOLUTIONS:
                    if svc.resolution == "DNS_ROUND_ROBIN":
                        cla.endpoints[0].lb_endpoints = cla.endpoints[0].lb_endpoints[:1]
                    cla.endpoints[0].lb_endpoints = [
                        ep.LbEndpoint(endpoint=x.endpoint) for x in cla.endpoints[0].lb_endpoints
                    ]
                    cluster.load_assignment = cla
                out.append(resource(types.CLUSTER, name, cluster))
    return out


def _routes(config: MeshConfig, proxy: ProxyIdentity, view: ScopedView) -> list[Resource]:
    ns = proxy.namespace
    out: list[Resource] = []
    if proxy.outbound_port is not None:
        vhosts = []
        rcfg = view.route_config
        for svc in view.services:
            vs = rcfg.mesh_routes_by_host.get(svc.host)
            for i, port in enumerate(p for p in svc.ports if p.is_http):
                vhosts.append(virtual_host(svc, port, vs, rcfg, ns, i == 0))
        vhosts += alias_virtual_hosts(rcfg, view.services, ns)  # VirtualService hosts not in the registry
        vhosts.append(catch_all_vhost(view.scope.sidecar))
        name = outbound_route_name(proxy)
        rc = rte.RouteConfiguration(
            name=name,
            virtual_hosts=vhosts,
            validate_clusters=False,
            max_direct_response_body_size_bytes=1048576,
        )
        out.append(resource(types.ROUTE, name, rc))
    out += _own_routes(proxy)
    for site in dapr_sites(proxy):
        grpc = site.grpc
        chosen = resiliency.applicable(config.resiliencies, site.namespace, site_callers(proxy, site.route))
        per_service = [
            invoke_routes(
                svc,
                view.route_config,
                site.namespace,
                grpc,
                site.token,
                resiliency.invoke_policy(chosen, app_ids(svc, svc.namespace)),
            )
            for svc in view.services
        ]
        routes = [r for prefix, _ in per_service for r in prefix]
        routes += [r for _, header in per_service for r in header]
        routes += token_reject_routes(site.token, grpc)
        if site.target:
            routes.append(capabilities_route(site.cluster))
        vhost = rte.VirtualHost(name="dapr_grpc" if grpc else "dapr_http", domains=["*"], routes=routes)
        name = site.route
        out.append(
            resource(
                types.ROUTE,
                name,
                rte.RouteConfiguration(
                    name=name,
                    virtual_hosts=[vhost],
                    validate_clusters=False,
                    max_direct_response_body_size_bytes=1048576,
                ),
            )
        )
    return out


def build_naive(
    config: MeshConfig, proxy: ProxyIdentity, changed_at: float = 0.0, version: str = ""
) -> Snapshot:
    config = config_for(config, proxy)  # VirtualService matches on sourceLabels / sourceNamespace
    view = ScopedView(config, scope_for(config, proxy))
    mesh = _clusters(config, view, proxy)
    if proxy.mode is not ProxyMode.GATEWAY:  # Dapr circuit breakers: copies of the targets' clusters
        by_type = {t: {r.name: r for r in mesh if r.type_url == t} for t in (types.CLUSTER, types.ENDPOINT)}
        targets = breaker_targets(config, view.route_config, view.services, proxy)
        cds, eds = breaker_resources(targets, by_type[types.CLUSTER], by_type[types.ENDPOINT])
        mesh += cds + eds
    items = [*mesh] + [
        resource(types.CLUSTER, n, static_cluster(n, h, p, h2, r))
        for n, h, p, h2, r in own_cluster_specs(proxy)
    ]
    if proxy.mode is not ProxyMode.GATEWAY:
        extras = sidecar_extras(config, view, proxy)
        replaced = {x.name: x for x in extras.replaced}
        own = [replaced.get(x.name, x) for x in proxy_listeners(proxy)]
        items += [resource(types.LISTENER, lis.name, lis) for lis in own]
        items += [resource(types.LISTENER, x.name, x) for x in tcp_listeners(config, view, proxy)]
        items += [resource(types.LISTENER, x.name, x) for x in extras.listeners]
        items += [resource(types.CLUSTER, x.name, x) for x in extras.clusters]
        items += _routes(config, proxy, view)
        items += [resource(types.ROUTE, x.name, x) for x in extras.routes]
    return Snapshot.build(items, changed_at, version)
