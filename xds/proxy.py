"""Who a connected Envoy is: parsed once from the xDS Node (id + metadata) of its first request.

The bootstrap (envoy/*.yaml templates, written by `mecha bootstrap`) puts everything the translator needs
under node.metadata["mecha"], so the control plane keeps no per-proxy port table of its own:

    node:
      id: reviews-v1            # unique proxy id; snapshots are keyed by it
      cluster: reviews          # informational
      metadata:
        mecha:
          mode: sidecar         # sidecar | node | gateway | proxyless (also: metadata GENERATOR: grpc)
          namespace: default
          address: 127.0.0.1    # where other proxies reach this proxy's inbound listeners
          admin: 127.0.0.1:15000
          outbound_port: 15001  # apps send mesh traffic here (Host header picks the service)
          dapr_http_port: 3500  # Dapr HTTP API listener (invoke routes + capability service)
          dapr_grpc_port: 50001
          capabilities_http: 127.0.0.1:3501   # capability service behind the Dapr listeners
          capabilities_grpc: 127.0.0.1:50002
          labels: {app: reviews, version: v1}
          gateways: [istio-system/ingressgateway]   # gateway mode: Gateway resources it serves
          gateway_ports: {"80": 18080}               # gateway mode: Gateway server port -> bound port
          bind: 127.0.0.1         # gateway/node mode: address of listeners that default to 0.0.0.0 (istiod)
          tcp_ports: {"9000": 19000}  # TCP/TLS service port -> loopback port of its outbound TCP listener
          locality: us-east/zone-a/rack-1    # optional: locality load balancing is relative to it
          workload_group: reviews-v1   # optional: register this proxy's endpoint in that WorkloadGroup
          apps:                 # the workloads this proxy fronts (one in sidecar mode, many in node mode)
          - {name: reviews, namespace: default, app_port: 9081, inbound_port: 15006,
             labels: {app: reviews, version: v1}}
          # app_protocol (istiod's appProtocol) or port_name (`mysql-main`) of a TCP-family protocol: the
          # inbound listener proxies TCP (server-speaks-first protocols work), else it is HTTP
          # node mode, per app (optional): its own Dapr listeners on this proxy and its capability runtime
          #   dapr_http_port: 3504, dapr_grpc_port: 50005, capabilities_http: 127.0.0.1:3604,
          #   capabilities_grpc: 127.0.0.1:50105, dapr_api_token: s3cret, app_api_token: app-s3cret
          dapr_api_token: s3cret   # optional: DAPR_API_TOKEN required on invoke routes (apps may override)
          app_api_token: app-s3cret  # optional: APP_API_TOKEN added by inbound routes (apps may override)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from xds.protocols import is_tcp, port_protocol


class ProxyMode(StrEnum):
    SIDECAR = "sidecar"
    NODE = "node"
    GATEWAY = "gateway"
    PROXYLESS = "proxyless"  # a gRPC app's own xDS client (no Envoy): node metadata GENERATOR grpc, as istiod


class ProxyIdentityError(ValueError):
    """The node metadata is unusable; the message names the field."""


def _labels(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ProxyIdentityError(f"node.metadata.mecha.{where}: expected a map of strings")
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _port(value: Any, where: str, required: bool = False) -> int | None:
    if value is None or value == "":
        if required:
            raise ProxyIdentityError(f"node.metadata.mecha.{where}: required port is missing")
        return None
    try:
        port = int(float(value))  # protobuf Struct numbers arrive as floats
    except (TypeError, ValueError):
        raise ProxyIdentityError(f"node.metadata.mecha.{where}: {value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ProxyIdentityError(f"node.metadata.mecha.{where}: {port} is out of range 1-65535")
    return port


def _locality(value: Any) -> str:
    if value is None or value == "":
        return ""
    text = str(value).strip("/")
    if not isinstance(value, str) or text.count("/") > 2 or not text.split("/")[0]:
        raise ProxyIdentityError(f"node.metadata.mecha.locality: {value!r} is not region[/zone[/subzone]]")
    return text


def _bind(value: Any) -> str:
    if value is None or value == "":
        return ""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ProxyIdentityError(f"node.metadata.mecha.bind: {value!r} is not an IP address") from None


def _address(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ProxyIdentityError(f"node.metadata.mecha.{where}: {text!r} is not host:port")
    _port(port, where, required=True)
    return text


def _token(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProxyIdentityError(f"node.metadata.mecha.{where}: expected a string")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):  # must fit in an HTTP header value as-is
        raise ProxyIdentityError(f"node.metadata.mecha.{where}: contains whitespace or control characters")
    return value


def _check_dapr_ports(meta: Mapping[str, Any], apps: list[AppBinding]) -> None:
    """Every Dapr listener port of the proxy (its own and each app's) is bound once."""
    seen: dict[int, str] = {}
    owners = [("dapr_http_port", meta.get("dapr_http_port")), ("dapr_grpc_port", meta.get("dapr_grpc_port"))]
    for i, app in enumerate(apps):
        owners += [(f"apps[{i}].dapr_http_port", app.dapr_http_port)]
        owners += [(f"apps[{i}].dapr_grpc_port", app.dapr_grpc_port)]
    for where, raw in owners:
        port = _port(raw, where)
        if port is None:
            continue
        if port in seen:
            raise ProxyIdentityError(f"node.metadata.mecha.{where}: port {port} is also {seen[port]}")
        seen[port] = where


@dataclass(frozen=True, slots=True)
class AppBinding:
    """One workload fronted by this proxy: inbound traffic on inbound_port goes to app_address:app_port."""

    name: str
    namespace: str = "default"
    app_port: int | None = None
    inbound_port: int | None = None
    app_address: str = "127.0.0.1"
    app_protocol: str = "http"  # http | grpc (grpc means HTTP/2 to the app) | tcp, mysql, mongo, redis...
    port_name: str = ""  # Kubernetes-style port name: `mysql-main` selects MySQL as istiod does
    protocol: str = "HTTP"  # what the inbound listener speaks (xds.protocols.port_protocol)
    labels: tuple[tuple[str, str], ...] = ()
    # Node mode: this app's own Dapr listeners on the shared proxy and the capability runtime behind them.
    dapr_http_port: int | None = None
    dapr_grpc_port: int | None = None
    capabilities_http: str | None = None
    capabilities_grpc: str | None = None
    # DAPR_API_TOKEN callers must send on invoke routes; APP_API_TOKEN sent to the app (None: the proxy's)
    dapr_api_token: str | None = field(default=None, repr=False)
    app_api_token: str | None = field(default=None, repr=False)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def has_dapr(self) -> bool:
        return self.dapr_http_port is not None or self.dapr_grpc_port is not None

    @property
    def is_tcp(self) -> bool:
        """Inbound traffic is proxied as TCP (tcp-*, mysql-*, mongo-*, redis-* ports, appProtocol tcp)."""
        return is_tcp(self.protocol)


@dataclass(frozen=True, slots=True)
class ProxyIdentity:
    id: str
    mode: ProxyMode = ProxyMode.SIDECAR
    namespace: str = "default"
    address: str = "127.0.0.1"
    admin: str | None = None
    outbound_port: int | None = None
    dapr_http_port: int | None = None
    dapr_grpc_port: int | None = None
    capabilities_http: str | None = None
    capabilities_grpc: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    apps: tuple[AppBinding, ...] = ()
    gateways: tuple[str, ...] = ()
    gateway_ports: tuple[tuple[int, int], ...] = ()
    tcp_ports: tuple[tuple[int, int], ...] = ()  # (service port, bound port): outbound TCP/TLS listeners
    locality: str = ""  # "region/zone/subzone": endpoint priorities and weights are relative to it
    workload_group: str = ""  # WorkloadGroup of its namespace to register in (controlplane/registration.py)
    bind: str = ""  # gateway/node listeners' address ("" -> 0.0.0.0); `mecha up` says 127.0.0.1
    extra: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    dapr_api_token: str | None = field(default=None, repr=False)  # default of every app's dapr_api_token
    app_api_token: str | None = field(default=None, repr=False)  # default of every app's app_api_token
    # verified, not claimed: the service accounts of the stream's credential (set by the xDS server after
    # the authenticator accepted it; empty without one, --insecure-xds). Its certificate's identities.
    service_accounts: tuple[str, ...] = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def with_service_accounts(self, accounts: tuple[str, ...] | list[str]) -> ProxyIdentity:
        """This identity as verified by a credential naming these service accounts."""
        return replace(self, service_accounts=tuple(accounts))

    @classmethod
    def from_node(cls, node_id: str, metadata: Mapping[str, Any] | None) -> ProxyIdentity:
        """Build from Envoy's Node.id and Node.metadata (already converted from Struct to a dict)."""
        if not node_id:
            raise ProxyIdentityError("node.id is empty: every proxy needs a unique id")
        meta = (metadata or {}).get("mecha") or {}
        if not isinstance(meta, Mapping):
            raise ProxyIdentityError("node.metadata.mecha: expected a map")
        # istiod picks its gRPC generator from GENERATOR: grpc (what istio-agent writes for proxyless apps)
        default_mode = "proxyless" if (metadata or {}).get("GENERATOR") == "grpc" else "sidecar"
        try:
            mode = ProxyMode(str(meta.get("mode", default_mode)))
        except ValueError:
            raise ProxyIdentityError(
                f"node.metadata.mecha.mode: {meta.get('mode')!r} is not one of "
                f"{', '.join(m.value for m in ProxyMode)}"
            ) from None
        namespace = str(meta.get("namespace") or "default")
        apps: list[AppBinding] = []
        raw_apps = meta.get("apps") or []
        if not isinstance(raw_apps, list):
            raise ProxyIdentityError("node.metadata.mecha.apps: expected a list")
        for i, app in enumerate(raw_apps):
            if not isinstance(app, Mapping) or not app.get("name"):
                raise ProxyIdentityError(f"node.metadata.mecha.apps[{i}].name: required")
            apps.append(
                AppBinding(
                    name=str(app["name"]),
                    namespace=str(app.get("namespace") or namespace),
                    app_port=_port(app.get("app_port"), f"apps[{i}].app_port"),
                    inbound_port=_port(app.get("inbound_port"), f"apps[{i}].inbound_port"),
                    app_address=str(app.get("app_address") or "127.0.0.1"),
                    app_protocol=str(app.get("app_protocol") or "http"),
                    port_name=str(app.get("port_name") or ""),
                    protocol=port_protocol(
                        str(app.get("app_protocol") or ""), str(app.get("port_name") or "")
                    ),
                    labels=_labels(app.get("labels"), f"apps[{i}].labels"),
                    dapr_http_port=_port(app.get("dapr_http_port"), f"apps[{i}].dapr_http_port"),
                    dapr_grpc_port=_port(app.get("dapr_grpc_port"), f"apps[{i}].dapr_grpc_port"),
                    capabilities_http=_address(app.get("capabilities_http"), f"apps[{i}].capabilities_http"),
                    capabilities_grpc=_address(app.get("capabilities_grpc"), f"apps[{i}].capabilities_grpc"),
                    dapr_api_token=_token(app.get("dapr_api_token"), f"apps[{i}].dapr_api_token"),
                    app_api_token=_token(app.get("app_api_token"), f"apps[{i}].app_api_token"),
                )
            )
        _check_dapr_ports(meta, apps)
        if mode is ProxyMode.SIDECAR and len(apps) > 1:
            raise ProxyIdentityError("node.metadata.mecha.apps: a sidecar fronts one app; use mode: node")
        gw_ports_raw = meta.get("gateway_ports") or {}
        if not isinstance(gw_ports_raw, Mapping):
            raise ProxyIdentityError("node.metadata.mecha.gateway_ports: expected a map port -> port")
        gw_ports = tuple(
            sorted(
                (
                    _port(k, f"gateway_ports key {k}", True) or 0,
                    _port(v, f"gateway_ports[{k}]", True) or 0,
                )
                for k, v in gw_ports_raw.items()
            )
        )
        tcp_raw = meta.get("tcp_ports") or {}
        if not isinstance(tcp_raw, Mapping):
            raise ProxyIdentityError("node.metadata.mecha.tcp_ports: expected a map service port -> port")
        tcp_ports = tuple(
            sorted(
                (_port(k, f"tcp_ports key {k}", True) or 0, _port(v, f"tcp_ports[{k}]", True) or 0)
                for k, v in tcp_raw.items()
            )
        )
        return cls(
            id=node_id,
            mode=mode,
            namespace=namespace,
            address=str(meta.get("address") or "127.0.0.1"),
            admin=str(meta["admin"]) if meta.get("admin") else None,
            outbound_port=_port(meta.get("outbound_port"), "outbound_port"),
            dapr_http_port=_port(meta.get("dapr_http_port"), "dapr_http_port"),
            dapr_grpc_port=_port(meta.get("dapr_grpc_port"), "dapr_grpc_port"),
            capabilities_http=str(meta["capabilities_http"]) if meta.get("capabilities_http") else None,
            capabilities_grpc=str(meta["capabilities_grpc"]) if meta.get("capabilities_grpc") else None,
            labels=_labels(meta.get("labels"), "labels"),
            apps=tuple(apps),
            gateways=tuple(str(g) for g in (meta.get("gateways") or [])),
            gateway_ports=gw_ports,
            tcp_ports=tcp_ports,
            locality=_locality(meta.get("locality")),
            workload_group=str(meta.get("workload_group") or ""),
            bind=_bind(meta.get("bind")),
            dapr_api_token=_token(meta.get("dapr_api_token"), "dapr_api_token"),
            app_api_token=_token(meta.get("app_api_token"), "app_api_token"),
        )
