"""Envoy tracing from Istio's Telemetry `tracing` + meshConfig.extensionProviders.opentelemetry.

Each HttpConnectionManager gets istiod's tracing block (pilot/pkg/networking/core/tracing.go): the
OpenTelemetry tracer exporting over OTLP/gRPC through a cluster `outbound|<port>||<service>`, random
sampling = randomSamplingPercentage, client/overall sampling 100 %. Outbound, Dapr and gateway listeners
take the CLIENT side of the resolved config, inbound listeners the SERVER side (istiod's listener classes).
Envoy's OpenTelemetry tracer reads and writes W3C `traceparent`, so a request that carries one continues
its trace. Nothing is emitted unless the config asks for tracing (every HCM then pays for the tracer).

The listeners are already serialized (hand-encoded on the hot path); the tracing field is appended to each
HCM's bytes at the wire level (protobuf merges a field appended to a message), so no listener is decoded
into messages and re-encoded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import timedelta
from functools import cache, lru_cache

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.trace import v3 as trace
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.type import v3 as typ
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds import types
from xds.model.mesh import MeshConfig
from xds.model.telemetry import (
    CLIENT,
    SERVER,
    OtelProvider,
    TracingSpec,
    WorkloadTracing,
    tracing_for,
)
from xds.proxy import ProxyIdentity, ProxyMode
from xds.translate.envoy_core import DEFAULT_CONNECT_TIMEOUT, protocol_options, socket
from xds.translate.listener import HCM_NAME, HCM_TYPE_URL
from xds.translate.pack import field_bytes, field_number, resource
from xds.types import Resource

OTEL_TRACER = "envoy.tracers.opentelemetry"
EXPORT_TIMEOUT = timedelta(seconds=5)
_OTEL_TYPE = AnyMsg.pack(trace.OpenTelemetryConfig()).type_url


def proxy_tracing(config: MeshConfig, proxy: ProxyIdentity) -> WorkloadTracing | None:
    """The proxy's resolved tracing; None when neither side traces (the common, free case)."""
    settings, docs = config.tracing  # read once per config
    if not settings.providers:
        return None
    labels = dict(proxy.label_map)
    if proxy.mode is ProxyMode.SIDECAR and proxy.apps:
        labels = {**proxy.apps[0].label_map, **labels}
    found = tracing_for(settings, docs, proxy.namespace, labels)
    return found if found.client is not None or found.server is not None else None


def collector_cluster_name(provider: OtelProvider) -> str:
    """istiod's name for the collector's cluster (the service's outbound cluster)."""
    return f"outbound|{provider.port}||{provider.service}"


def service_name(proxy: ProxyIdentity) -> str:
    """istiod's span service name: the canonical service (app label, else the workload) and namespace."""
    labels = dict(proxy.label_map)
    if proxy.apps:
        labels = {**proxy.apps[0].label_map, **labels}
        fallback = proxy.apps[0].name
    else:
        fallback = proxy.id
    name = labels.get("service.istio.io/canonical-name") or labels.get("app") or fallback
    return f"{name}.{proxy.namespace}"


@lru_cache(maxsize=1024)
def tracing_bytes(spec: TracingSpec, name: str, gateway: bool) -> bytes:
    """The HCM `tracing` field (serialized as a field of HttpConnectionManager, ready to append)."""
    otel = trace.OpenTelemetryConfig(
        grpc_service=core.GrpcService(
            envoy_grpc=core.GrpcServiceEnvoyGrpc(
                cluster_name=collector_cluster_name(spec.provider), authority=spec.provider.service
            ),
            timeout=EXPORT_TIMEOUT,
        ),
        service_name=name,
    )
    tracing = hcm.HttpConnectionManagerTracing(
        client_sampling=typ.Percent(100.0),
        random_sampling=typ.Percent(spec.sampling),
        overall_sampling=typ.Percent(100.0),
        provider=trace.TracingHttp(
            name=OTEL_TRACER, typed_config=AnyMsg(type_url=_OTEL_TYPE, value=bytes(otel))
        ),
        max_path_tag_length=spec.provider.max_tag_length or None,
        spawn_upstream_span=gateway,  # istiod: a gateway is a proxy of its own; a sidecar's span is the hop
    )
    return bytes(hcm.HttpConnectionManager(tracing=tracing))


def collector_clusters(config: MeshConfig, tracing: WorkloadTracing) -> list[Resource]:
    """A cluster per provider used, unless the collector is a mesh service (then its outbound cluster is
    already in CDS, as istiod uses it): HTTP/2 (OTLP/gRPC), STATIC for an IP, STRICT_DNS for a name."""
    out = []
    for provider in dict.fromkeys(s.provider for s in (tracing.client, tracing.server) if s is not None):
        svc = config.service_by_host.get(provider.service)
        if svc is not None and any(p.number == provider.port for p in svc.ports):
            continue
        out.append(_collector_cluster(provider))
    return out


@cache
def _collector_cluster(provider: OtelProvider) -> Resource:
    name = collector_cluster_name(provider)
    try:
        ipaddress.ip_address(provider.service)
        kind = clu.ClusterDiscoveryType.STATIC
    except ValueError:
        kind = clu.ClusterDiscoveryType.STRICT_DNS
    cluster = clu.Cluster(
        name=name,
        type=kind,
        connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        lb_policy=clu.ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ep.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                ep.LocalityLbEndpoints(
                    lb_endpoints=[
                        ep.LbEndpoint(endpoint=ep.Endpoint(address=socket(provider.service, provider.port)))
                    ]
                )
            ],
        ),
        typed_extension_protocol_options=protocol_options(True),
    )
    return resource(types.CLUSTER, name, cluster)


# ---- wire-level decoration of serialized listeners ------------------------------------------------------

_L_CHAINS = field_number(lis.Listener, "filter_chains")
_L_DEFAULT_CHAIN = field_number(lis.Listener, "default_filter_chain")
_L_DIRECTION = field_number(lis.Listener, "traffic_direction")
_FC_FILTERS = field_number(lis.FilterChain, "filters")
_F_NAME = field_number(lis.Filter, "name")
_F_TYPED = field_number(lis.Filter, "typed_config")
_ANY_URL = field_number(AnyMsg, "type_url")
_ANY_VALUE = field_number(AnyMsg, "value")


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the whole field, start of its value, end) of each field."""
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, end = _read_varint(buf, pos)
        elif wire == 1:
            end = pos + 8
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            end = pos + size
        elif wire == 5:
            end = pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, start, pos, end
        pos = end


def _rewrite(buf: bytes, number: int, edit: object) -> bytes:
    """buf with each length-delimited field `number` replaced by edit(value bytes)."""
    out = bytearray()
    for num, wire, start, value_at, end in _fields(buf):
        if num == number and wire == 2:
            out += field_bytes(num, edit(buf[value_at:end]))  # type: ignore[operator]
        else:
            out += buf[start:end]
    return bytes(out)


def _decorate_filter(raw: bytes, extra: bytes) -> bytes:
    values = {num: raw[v:e] for num, wire, _, v, e in _fields(raw) if wire == 2}
    if values.get(_F_NAME) != HCM_NAME.encode():
        return raw

    def any_value(typed: bytes) -> bytes:
        url = {num: typed[v:e] for num, _, _, v, e in _fields(typed)}.get(_ANY_URL)
        if url != HCM_TYPE_URL.encode():
            return typed
        return _rewrite(typed, _ANY_VALUE, lambda v: v + extra)

    return _rewrite(raw, _F_TYPED, any_value)


def _direction(body: bytes) -> int:
    for num, wire, _, value_at, _end in _fields(body):
        if num == _L_DIRECTION and wire == 0:
            return _read_varint(body, value_at)[0]
    return 0


def decorate_listener(body: bytes, extra: bytes) -> bytes:
    def chain(raw: bytes) -> bytes:
        return _rewrite(raw, _FC_FILTERS, lambda f: _decorate_filter(f, extra))

    body = _rewrite(body, _L_CHAINS, chain)
    return _rewrite(body, _L_DEFAULT_CHAIN, chain)


def traced_listeners(
    tracing: WorkloadTracing, proxy: ProxyIdentity, listeners: list[Resource]
) -> list[Resource]:
    """Every HCM of the proxy's listeners with the tracing of its side (inbound: SERVER, else CLIENT)."""
    name = service_name(proxy)
    gateway = proxy.mode is ProxyMode.GATEWAY
    out = []
    for res in listeners:
        inbound = _direction(res.body) == int(core.TrafficDirection.INBOUND)
        spec = tracing.for_side(SERVER if inbound else CLIENT)
        if spec is None:
            out.append(res)
            continue
        out.append(
            Resource.make(
                res.type_url, res.name, decorate_listener(res.body, tracing_bytes(spec, name, gateway))
            )
        )
    return out
