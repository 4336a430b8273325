"""WebSocket upgrades on every HttpConnectionManager, as istiod sets them (issue #14 item 8).

Reuses the snapshot of test_path_normalization, which holds one of each kind of HTTP listener: sidecar
outbound and inbound (plain and with RBAC), Dapr HTTP and gRPC, ALLOW_ANY outbound, Sidecar ingress and
egress, node-mode outbound and a gateway. Mesh mTLS adds the TLS inbound chains.
"""

from __future__ import annotations

from conftest import config_of, decoded
from test_path_normalization import CONFIG, EDGE, GATEWAY, NODE, SIDECAR, _all_managers, _managers

from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.pipeline import SnapshotBuilder
from xds.translate.upgrades import WEBSOCKET


def test_every_http_connection_manager_accepts_websocket() -> None:
    managers = _all_managers(None)
    assert len(managers) >= 10, sorted(managers)
    for where, manager in managers.items():
        assert manager.get("upgradeConfigs") == [{"upgradeType": WEBSOCKET}], where


def test_mtls_inbound_chains_accept_websocket() -> None:
    builder = SnapshotBuilder(certs=WorkloadCertificates(CertificateAuthority()))
    snaps = builder.build(config_of(CONFIG), [SIDECAR, EDGE, NODE, GATEWAY])
    inbound = _managers(decoded(snaps["edge-v1"], "LDS"))
    tls_chains = [k for k in inbound if k.startswith("virtualInbound_15106/")]
    assert len(tls_chains) == 2, sorted(inbound)  # PERMISSIVE: TLS + plaintext
    for where in tls_chains:
        assert inbound[where].get("upgradeConfigs") == [{"upgradeType": WEBSOCKET}], where
