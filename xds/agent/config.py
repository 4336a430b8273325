"""An agent's settings, apart from the agent: importing this loads no gRPC or cryptography, so the capability
service reads its --agent-* flags and spawns its agent (`python -m xds.agent`, which imports them) before its
own imports (bench/sidecar_start_bench.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class AgentConfig:
    credential_file: Path
    control_plane: str  # host:port of the control plane's xDS/CA port
    socket_dir: Path
    root_cert: Path | None = None  # the mesh root that signs the control plane's TLS certificate
    trust_domain: str = "cluster.local"
    cert_ttl_s: float = 0  # ask for this lifetime (0: the CA's)
    cert_dir: Path | None = None  # proxyless gRPC: write cert-chain.pem, key.pem, root-cert.pem here
    with_sds: bool = True
    with_xds_proxy: bool = True
    # Envoy in another container (compose, Kubernetes) runs as another user: its group may reach the sockets
    # (folder 0710, sockets 0660, this group), nobody else; None: owner only (0700 / 0600)
    socket_group: int | None = None
    # the Envoy admin beside this agent (HOST:PORT on loopback, or unix:PATH): the control plane reads it
    # through the agent's admin relay (xds/agent/adminrelay.py); None: no relay
    envoy_admin: str | None = None
