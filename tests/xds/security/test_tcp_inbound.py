"""TCP-family workload ports get a TCP proxy on the inbound listener, with and without mesh mTLS, and the
protocol is chosen as istiod chooses it (appProtocol, then the port name's prefix) (issue #14 item 8)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import config_of, decoded

from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.pipeline import SnapshotBuilder
from xds.protocols import port_protocol
from xds.proxy import ProxyIdentity

TCP_PROXY = "envoy.filters.network.tcp_proxy"
HCM = "envoy.filters.network.http_connection_manager"
NET_RBAC = "envoy.filters.network.rbac"
CONFIG = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 3306, name: mysql, protocol: MySQL}]
  endpoints: [{address: 127.0.0.1, ports: {mysql: 15006}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-from-app, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/app"]}}]}]
"""


def _db(**binding: str) -> ProxyIdentity:
    app = {"name": "db", "app_port": 3306, "inbound_port": 15006, "labels": {"app": "db"}, **binding}
    return ProxyIdentity.from_node("db-v1", {"mecha": {"labels": {"app": "db"}, "apps": [app]}})


def _filters(listener: dict[str, Any]) -> list[list[str]]:
    return [[f["name"] for f in chain["filters"]] for chain in listener["filterChains"]]


@pytest.mark.parametrize(
    ("app_protocol", "port_name", "expected"),
    [
        ("", "mysql", "MYSQL"),
        ("", "mysql-primary", "MYSQL"),
        ("", "tcp-db", "TCP"),
        ("", "redis", "REDIS"),
        ("", "mongo-x", "MONGO"),
        ("tcp", "http-web", "TCP"),  # appProtocol wins over the name, as in istiod
        ("", "grpc-web", "GRPC-WEB"),
        ("", "web", "HTTP"),  # no known prefix: HTTP (istiod would sniff)
        ("", "", "HTTP"),
    ],
)
def test_protocol_selection(app_protocol: str, port_name: str, expected: str) -> None:
    assert port_protocol(app_protocol, port_name) == expected


@pytest.mark.parametrize(
    "binding", [{"port_name": "mysql"}, {"app_protocol": "tcp"}, {"port_name": "redis-0"}]
)
def test_plain_inbound_is_tcp_proxy_and_has_no_route(binding: dict[str, str]) -> None:
    snap = SnapshotBuilder().build(config_of(CONFIG.split("---")[0]), [_db(**binding)])["db-v1"]
    listener = decoded(snap, "LDS")["virtualInbound_15006"]
    assert _filters(listener) == [[TCP_PROXY]]
    assert listener["filterChains"][0]["filters"][0]["typedConfig"]["cluster"] == "inbound|3306||db"
    assert "inbound|15006||" not in decoded(snap, "RDS")


def test_http_app_keeps_http_inbound() -> None:
    snap = SnapshotBuilder().build(config_of(CONFIG.split("---")[0]), [_db(port_name="http")])["db-v1"]
    assert _filters(decoded(snap, "LDS")["virtualInbound_15006"]) == [[HCM]]


def test_mtls_inbound_chains_proxy_tcp_after_network_rbac() -> None:
    builder = SnapshotBuilder(certs=WorkloadCertificates(CertificateAuthority()))
    snap = builder.build(config_of(CONFIG), [_db(port_name="mysql")])["db-v1"]
    chains = _filters(decoded(snap, "LDS")["virtualInbound_15006"])
    assert len(chains) == 2  # PERMISSIVE: TLS and plaintext
    assert all(c == [NET_RBAC, TCP_PROXY] for c in chains), chains
