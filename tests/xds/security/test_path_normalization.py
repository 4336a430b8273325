"""meshConfig.pathNormalization on every HttpConnectionManager: sidecar outbound and inbound (plain and with
RBAC), Sidecar ingress/egress listeners and ALLOW_ANY, node mode, gateways and the Dapr listeners.

The fields per choice are istiod's (pilot/pkg/networking/core/listener.go buildHTTPConnectionManager).
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import config_of, decoded

from xds.pipeline import SnapshotBuilder
from xds.proxy import ProxyIdentity
from xds.translate.normalize import PathNormalization, parse_path_normalization

HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

EXPECTED: dict[PathNormalization, dict[str, Any]] = {
    PathNormalization.NONE: {"normalizePath": False, "pathWithEscapedSlashesAction": "KEEP_UNCHANGED"},
    PathNormalization.BASE: {"normalizePath": True, "pathWithEscapedSlashesAction": "KEEP_UNCHANGED"},
    PathNormalization.MERGE_SLASHES: {
        "normalizePath": True,
        "mergeSlashes": True,
        "pathWithEscapedSlashesAction": "KEEP_UNCHANGED",
    },
    PathNormalization.DECODE_AND_MERGE_SLASHES: {
        "normalizePath": True,
        "mergeSlashes": True,
        "pathWithEscapedSlashesAction": "UNESCAPE_AND_FORWARD",
    },
}
FIELDS = ("normalizePath", "mergeSlashes", "pathWithEscapedSlashesAction")

CONFIG = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: edge, namespace: edge}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}
  ingress:
  - port: {number: 17000, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:9090
  egress:
  - port: {number: 17001, protocol: HTTP, name: http}
    hosts: ["*/*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g, namespace: default}
spec:
  selector: {istio: ingress}
  servers: [{port: {number: 80, protocol: HTTP, name: http}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: via-gateway, namespace: default}
spec:
  hosts: ["*"]
  gateways: [g]
  http: [{route: [{destination: {host: reviews, port: {number: 9080}}}]}]
"""


def _proxy(proxy_id: str, meta: dict[str, Any]) -> ProxyIdentity:
    return ProxyIdentity.from_node(proxy_id, {"mecha": meta})


SIDECAR = _proxy(
    "productpage-v1",
    {
        "mode": "sidecar",
        "namespace": "default",
        "outbound_port": 15001,
        "dapr_http_port": 3500,
        "dapr_grpc_port": 50001,
        "capabilities_http": "127.0.0.1:3501",
        "capabilities_grpc": "127.0.0.1:50002",
        "labels": {"app": "productpage"},
        "apps": [{"name": "productpage", "app_port": 9080, "inbound_port": 15006}],
    },
)
EDGE = _proxy(
    "edge-v1",
    {
        "mode": "sidecar",
        "namespace": "edge",
        "outbound_port": 15101,
        "labels": {"app": "edge"},
        "apps": [{"name": "edge", "app_port": 9081, "inbound_port": 15106}],
    },
)
NODE = _proxy(
    "node-1",
    {
        "mode": "node",
        "outbound_port": 15201,
        "apps": [
            {
                "name": "alpha",
                "namespace": "default",
                "app_port": 9082,
                "inbound_port": 15206,
                "dapr_http_port": 3600,
                "capabilities_http": "127.0.0.1:3601",
            }
        ],
    },
)
GATEWAY = _proxy(
    "gw",
    {
        "mode": "gateway",
        "namespace": "default",
        "labels": {"istio": "ingress"},
        "gateways": ["default/g"],
        "gateway_ports": {"80": 18080},
    },
)


def _managers(listeners: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every HttpConnectionManager of every filter chain, by `listener/chain index`."""
    out: dict[str, dict[str, Any]] = {}
    for name, listener in listeners.items():
        for i, chain in enumerate(listener.get("filterChains", [])):
            for f in chain.get("filters", []):
                if f.get("typedConfig", {}).get("@type") == HCM_TYPE:
                    out[f"{name}/{i}"] = f["typedConfig"]
    return out


def _all_managers(choice: PathNormalization | None) -> dict[str, dict[str, Any]]:
    builder = SnapshotBuilder() if choice is None else SnapshotBuilder(path_normalization=choice)
    snaps = builder.build(config_of(CONFIG), [SIDECAR, EDGE, NODE, GATEWAY])
    found: dict[str, dict[str, Any]] = {}
    for pid, snap in snaps.items():
        found.update({f"{pid}:{k}": v for k, v in _managers(decoded(snap, "LDS")).items()})
    return found


@pytest.mark.parametrize("choice", list(PathNormalization))
def test_every_http_connection_manager_carries_the_choice(choice: PathNormalization) -> None:
    managers = _all_managers(choice)
    # each kind of HTTP listener is there, so none can be missed
    expected_sites = {
        "productpage-v1:0.0.0.0_15001/0",  # sidecar outbound
        "productpage-v1:virtualInbound_15006/0",  # inbound with RBAC (security translator)
        "productpage-v1:dapr_http_3500/0",  # Dapr HTTP API
        "productpage-v1:dapr_grpc_50001/0",  # Dapr gRPC API
        "edge-v1:0.0.0.0_15101/0",  # ALLOW_ANY outbound (dynamic forward proxy)
        "edge-v1:virtualInbound_15106/0",  # plain inbound
        "edge-v1:virtualInbound_17000/0",  # Sidecar ingress
        "edge-v1:0.0.0.0_17001/0",  # Sidecar egress port
        "node-1:0.0.0.0_15201/0",  # node-mode outbound
        "gw:0.0.0.0_18080/0",  # gateway
    }
    assert expected_sites <= set(managers), sorted(managers)
    for where, manager in managers.items():
        got = {k: manager[k] for k in FIELDS if k in manager}
        assert got == EXPECTED[choice], where


def test_default_is_istiod_default_base() -> None:
    managers = _all_managers(None)
    assert managers
    for manager in managers.values():
        assert {k: manager[k] for k in FIELDS if k in manager} == EXPECTED[PathNormalization.BASE]


@pytest.mark.parametrize(
    ("raw", "choice"),
    [("", "BASE"), ("default", "BASE"), ("merge_slashes", "MERGE_SLASHES"), ("NONE", "NONE")],
)
def test_setting_values(raw: str, choice: str) -> None:
    assert parse_path_normalization(raw) is PathNormalization(choice)


def test_unknown_setting_names_the_choices() -> None:
    with pytest.raises(ValueError, match="DECODE_AND_MERGE_SLASHES"):
        parse_path_normalization("decode")
    with pytest.raises(ValueError, match="MERGE_SLASHES"):
        SnapshotBuilder(path_normalization="slashes")
