"""Shared Envoy building blocks and naming (istiod conventions, istio-mapping.md §0)."""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.extensions.upstreams.http import v3 as upstream_http
from envoy_data_plane.google.protobuf import Any as AnyMsg

import xds.translate.pack  # noqa: F401 - installs the betterproto2 patches before anything serializes

ADS = core.ConfigSource(ads=core.AggregatedConfigSource(), resource_api_version=core.ApiVersion.V3)
DEFAULT_CONNECT_TIMEOUT = timedelta(seconds=10)  # meshConfig.connectTimeout default
MAX_UINT32 = 4294967295
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def outbound_cluster_name(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster_name(app_port: int, app_name: str) -> str:
    return f"inbound|{app_port}||{app_name}"


def socket(address: str, port: int) -> core.Address:
    return core.Address(socket_address=core.SocketAddress(address=address, port_value=port))


def split_host_port(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return (host or default_host).strip("[]"), int(port)


def protocol_options(
    http2: bool,
    idle_timeout: timedelta | None = None,
    max_requests_per_connection: int | None = None,
) -> dict[str, AnyMsg]:
    """typed_extension_protocol_options for an upstream: explicit HTTP/1 or HTTP/2 + common options."""
    if http2:
        explicit = upstream_http.HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=core.Http2ProtocolOptions()
        )
    else:
        explicit = upstream_http.HttpProtocolOptionsExplicitHttpConfig(
            http_protocol_options=core.Http1ProtocolOptions()
        )
    common = None
    if idle_timeout is not None or max_requests_per_connection is not None:
        common = core.HttpProtocolOptions(
            idle_timeout=idle_timeout, max_requests_per_connection=max_requests_per_connection
        )
    opts = upstream_http.HttpProtocolOptions(
        explicit_http_config=explicit, common_http_protocol_options=common
    )
    return {HTTP_PROTOCOL_OPTIONS: AnyMsg.pack(opts)}
