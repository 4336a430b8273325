"""An Envoy bootstrap that talks only to its agent: ADS over xds.sock, SDS over sds.sock (no credential)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from xds.bootstrap import KEEPALIVE

XDS_CLUSTER = "mecha_xds"
# = xds.translate.security.mtls.SDS_CLUSTER (a test pins it), not imported: xds.translate costs the runner
# (`mecha up`) ~0.5 s of imports on its event loop before the first Envoy starts
SDS_CLUSTER = "sds-grpc"
# Envoy may start before its agent listens (they start together): retries spread over [0, 10), [0, 30),
# [0, 70) ms, then never more than 0.1 s apart (jittered), so Envoy is on the sockets within ~50 ms of their
# opening; the control plane's bootstrap uses 0.25-2 s. Past 3 s of failures Envoy warns once per retry (~15
# lines a second while an agent cannot start; one restarted by its capability service is back well before).
AGENT_RETRY_BACK_OFF = {"base_interval": "0.01s", "max_interval": "0.1s"}


def _pipe_cluster(name: str, path: Path, keepalive: bool = False) -> dict[str, Any]:
    """keepalive: HTTP/2 pings so Envoy notices a frozen agent (the agent's server accepts them: xdsproxy.py
    AGENT_SERVER_OPTIONS); the single-control-plane numbers even with replicas, whose failover is the agent's
    job (its channel pings them faster)."""
    http2: dict[str, Any] = {}
    if keepalive:
        interval, timeout = KEEPALIVE
        http2["connection_keepalive"] = {"interval": interval, "timeout": timeout}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": http2},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": str(path)}}}}]}],
        },
    }


def through_agent(rendered: str, socket_dir: Path) -> str:
    """A bootstrap rendered from envoy/bootstrap.yaml with its xDS cluster moved onto the agent's sockets."""
    doc = yaml.safe_load(rendered)
    clusters = [c for c in doc["static_resources"]["clusters"] if c["name"] not in (XDS_CLUSTER, SDS_CLUSTER)]
    if not socket_dir.is_absolute():  # an absolute one is kept as given: it may name a container's path
        socket_dir = socket_dir.resolve()
    clusters += [
        _pipe_cluster(XDS_CLUSTER, socket_dir / "xds.sock", keepalive=True),
        _pipe_cluster(SDS_CLUSTER, socket_dir / "sds.sock"),
    ]
    doc["static_resources"]["clusters"] = clusters
    for service in doc["dynamic_resources"]["ads_config"]["grpc_services"]:
        service["envoy_grpc"]["retry_policy"] = {"retry_back_off": dict(AGENT_RETRY_BACK_OFF)}
    return yaml.safe_dump(doc, sort_keys=False)
