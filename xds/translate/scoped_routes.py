"""Scoped outbound routing (SRDS): one small RouteConfiguration per service instead of one mesh-wide table.

With a single `outbound` RouteConfiguration, editing one VirtualService makes every proxy re-parse and rebuild
the whole table (at 1,000 services ~600 KB, and Envoy's apply time grows with it). Here the outbound
listener's HttpConnectionManager picks a route table per request from the :authority host (port stripped):
one ScopedRouteConfiguration per name a client may use for a service (short name in its own namespace,
`name.ns`, `name.ns.svc`, the FQDN) points at the RouteConfiguration `outbound|<namespace>|<n>` that holds
that service's virtual hosts (exactly the ones the single table would hold) together with those of about 15
other services of its namespace. A route change is then one ~20 KB RDS resource.

Dapr invocation re-enters the same tables through an internal listener (`outbound-internal`): the invoke route
only rewrites the path and the host, so it no longer copies VirtualService actions and the Dapr route table
does not change when a VirtualService does.

Used when every outbound name is exact (a scope key cannot be a wildcard) and the proxy's Sidecar, if any,
has no egress/ingress ports and no ALLOW_ANY (a catch-all for unknown hosts); otherwise the proxy keeps the
single table. A Sidecar-scoped proxy gets the scopes and tables of the services it sees. A VirtualService
host that is no registry service (`uk.bookinfo.com` bound to `mesh`) gets a scope of its own pointing at
`outbound|aliases`, which holds the same virtual hosts the single table gives it. A host no scope knows gets
Envoy's 404 (the single table answers 502 from its catch-all virtual host).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm

from xds import types
from xds.model.mesh import MeshConfig
from xds.model.resources import Service
from xds.translate.cluster import DEFAULT_CONNECT_TIMEOUT
from xds.translate.envoy_core import ADS, protocol_options
from xds.translate.pack import encode
from xds.types import Resource

SCOPES_NAME = "outbound"
# the virtual hosts of VirtualService hosts that are no registry service, each host a scope of its own
ALIAS_TABLE = "outbound|aliases"
INTERNAL_LISTENER = "outbound-internal"
INTERNAL_CLUSTER = "outbound-internal"
INTERNAL_CLUSTER_H2 = "outbound-internal-h2"  # gRPC invocation (dapr-grpc) needs HTTP/2 end to end

MODES = ("auto", "single", "scoped")
AUTO_MIN_SERVICES = 100  # below this one table is as cheap to re-send as the scopes are to hold


# Services share a route table in small groups: one table per service made every SotW ACK repeat ~1,000 names
# and Envoy subscribe to ~1,000 RDS resources; ~16 services a table keeps an edit's table at ~20 KB.
SERVICES_PER_TABLE = 16


def route_tables_of(services: Iterable[Service]) -> dict[str, str]:
    """host -> name of the route table holding its virtual hosts: `outbound|<namespace>|<n>`. A table holds
    services of one namespace only (their short names may repeat across namespaces); a service stays in its
    table while its namespace's table count is unchanged (the index is a hash of the host)."""
    by_namespace: dict[str, list[str]] = {}
    for svc in services:
        by_namespace.setdefault(svc.namespace, []).append(svc.host)
    out: dict[str, str] = {}
    for namespace, hosts in by_namespace.items():
        tables = max(1, -(-len(hosts) // SERVICES_PER_TABLE))
        for host in hosts:
            index = int.from_bytes(hashlib.blake2b(host.encode(), digest_size=4).digest(), "big") % tables
            out[host] = f"outbound|{namespace}|{index}"
    return out


def scope_keys(service: Service) -> tuple[tuple[str, ...], str]:
    """(keys any namespace may use, the short name only the service's own namespace may use or "")."""
    host = service.host
    suffix = f".{service.namespace}.svc.cluster.local"
    if not host.endswith(suffix):
        return (host,), ""
    short = host[: -len(suffix)]
    return (f"{short}.{service.namespace}", f"{short}.{service.namespace}.svc", host), short


def wants_scopes(mode: str, config: MeshConfig) -> bool:
    """Whether this config is routed by scopes (mode from `mecha serve --route-tables`)."""
    if mode == "single":
        return False
    if any("*" in s.host for s in config.services):
        return False  # a scope key is an exact host; wildcard ServiceEntry hosts need the single table
    if any("*" in h and h != "*" for h in config.mesh_routes_by_host):
        return False  # likewise a wildcard VirtualService host (its own virtual host in the single table)
    return mode == "scoped" or len(config.services) >= AUTO_MIN_SERVICES


def scope_resource(key: str, route_name: str) -> Resource:
    body = bytes(
        rte.ScopedRouteConfiguration(
            name=f"{SCOPES_NAME}/{key}",
            route_configuration_name=route_name,
            key=rte.ScopedRouteConfigurationKey(
                fragments=[rte.ScopedRouteConfigurationKeyFragment(string_key=key)]
            ),
        )
    )
    return Resource.make(types.SCOPED_ROUTE, f"{SCOPES_NAME}/{key}", body)


@cache
def scoped_routes_bytes() -> bytes:
    """HttpConnectionManager.scoped_routes: the scope is the :authority host without its port."""
    extractor = hcm.ScopedRoutesScopeKeyBuilderFragmentBuilderHeaderValueExtractor(
        name=":authority", element_separator=":", index=0
    )
    return bytes(
        hcm.ScopedRoutes(
            name=SCOPES_NAME,
            scope_key_builder=hcm.ScopedRoutesScopeKeyBuilder(
                fragments=[hcm.ScopedRoutesScopeKeyBuilderFragmentBuilder(header_value_extractor=extractor)]
            ),
            rds_config_source=ADS,
            scoped_rds=hcm.ScopedRds(scoped_rds_config_source=ADS),
        )
    )


def _internal_cluster(name: str, http2: bool) -> bytes:
    address = core.Address(
        envoy_internal_address=core.EnvoyInternalAddress(server_listener_name=INTERNAL_LISTENER)
    )
    return bytes(
        clu.Cluster(
            name=name,
            type=clu.ClusterDiscoveryType.STATIC,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
            load_assignment=ep.ClusterLoadAssignment(
                cluster_name=name,
                endpoints=[
                    ep.LocalityLbEndpoints(
                        lb_endpoints=[ep.LbEndpoint(endpoint=ep.Endpoint(address=address))]
                    )
                ],
            ),
            typed_extension_protocol_options=protocol_options(True) if http2 else {},
        )
    )


@cache
def internal_clusters() -> tuple[Resource, Resource]:
    return (
        Resource.make(types.CLUSTER, INTERNAL_CLUSTER, _internal_cluster(INTERNAL_CLUSTER, False)),
        Resource.make(types.CLUSTER, INTERNAL_CLUSTER_H2, _internal_cluster(INTERNAL_CLUSTER_H2, True)),
    )


def invoke_action_bytes(service: Service, port: int, grpc: bool, rewrite: str) -> bytes:
    """Dapr invoke route action: into the outbound scopes as if the app had called host:port itself."""
    return encode(
        rte.RouteAction,
        cluster=INTERNAL_CLUSTER_H2 if grpc else INTERNAL_CLUSTER,
        prefix_rewrite=rewrite or None,
        host_rewrite_literal=f"{service.host}:{port}",
        timeout=b"",  # Duration{} = no timeout: the VirtualService's timeout applies on the inner route
        max_grpc_timeout=b"",
    )
