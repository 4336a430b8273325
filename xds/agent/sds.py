"""SDS for the local Envoy over a Unix socket: `default` (chain + key) and `ROOTCA`, served by the same xDS
server code as the control plane, from a one-proxy snapshot that rotation replaces."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls

from xds import types
from xds.agent.certs import WorkloadCert
from xds.ca.workload import ROOT_SECRET, WORKLOAD_SECRET, root_secret
from xds.cache import SnapshotCache
from xds.cache.snapshot import Resource, Snapshot
from xds.server import XdsServer


def secrets_snapshot(cert: WorkloadCert) -> Snapshot:
    workload = tls.Secret(
        name=WORKLOAD_SECRET,
        tls_certificate=tls.TlsCertificate(
            certificate_chain=core.DataSource(inline_bytes=cert.chain_pem),
            private_key=core.DataSource(inline_bytes=cert.key_pem),
        ),
    )
    resources = [Resource.make(types.SECRET, WORKLOAD_SECRET, bytes(workload)), root_secret(cert.root_pem)]
    assert resources[1].name == ROOT_SECRET
    return Snapshot.build(resources)


class SdsServer:
    def __init__(self, proxy_id: str) -> None:
        self.proxy_id = proxy_id
        self.cache = SnapshotCache()
        self.server = XdsServer(self.cache, keepalive_options=())

    def publish(self, cert: WorkloadCert) -> None:
        self.cache.set_snapshot(self.proxy_id, secrets_snapshot(cert))

    async def start(self, socket_path: str) -> None:
        await self.server.start(f"unix:{socket_path}")

    async def stop(self) -> None:
        await self.server.stop(0.2)
