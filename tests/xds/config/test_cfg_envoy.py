"""Offline `envoy --mode validate`: translated listeners + clusters (routes inlined, EDS made STATIC) must be
accepted by real Envoy; and one documented input passes our validation but is rejected by Envoy (NACK)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfg_helpers import compile_text, decoded, errors, sidecar
from golden_harness import load_case

from xds.pipeline import SnapshotBuilder

GOLDEN = Path(__file__).parent / "golden"
ENVOY = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
HCM = "envoy.filters.network.http_connection_manager"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP2 = {
    "@type": "type.googleapis.com/" + HTTP_OPTIONS,
    "explicit_http_config": {"http2_protocol_options": {}},
}

pytestmark = pytest.mark.skipif(not Path(ENVOY).exists(), reason="envoy binary not found")

# A VirtualService whose uri regex is REGEX; regexes are checked before a push as Envoy checks them.
REGEX_VS = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo}
spec:
  hosts: [echo]
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - match: [{uri: {regex: "REGEX"}}]
    route: [{destination: {host: echo}}]
  - route: [{destination: {host: echo}}]
"""


def static_bootstrap(text: str) -> dict[str, Any]:
    result = compile_text(text)
    assert result.config is not None, [str(d) for d in errors(result)]
    proxy = sidecar()
    snap = SnapshotBuilder().build(result.config, [proxy])[proxy.id]
    routes = decoded(snap, "RDS", snake_case=True)
    endpoints = decoded(snap, "EDS", snake_case=True)
    listeners = list(decoded(snap, "LDS", snake_case=True).values())
    for listener in listeners:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == HCM:
                    cfg = f["typed_config"]
                    cfg["route_config"] = routes[cfg.pop("rds")["route_config_name"]]
    clusters = list(decoded(snap, "CDS", snake_case=True).values())
    for cluster in clusters:
        if cluster.get("type") == "EDS":
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = endpoints[cluster.pop("eds_cluster_config")["service_name"]]
    # SDS configs need a node. `envoy --mode validate` crashes (SIGSEGV, 1.40) on a static cluster taking SDS
    # over ADS (proxies get clusters by CDS): those clusters name a gRPC SDS source instead (never dialled).
    xds = {"name": "xds", "type": "STATIC", "typed_extension_protocol_options": {HTTP_OPTIONS: HTTP2}}
    return {
        "node": {"id": proxy.id, "cluster": proxy.id},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": [*_grpc_sds(clusters), xds]},
    }


def _grpc_sds(value: Any) -> Any:
    if isinstance(value, list):
        return [_grpc_sds(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value == {"ads": {}, "resource_api_version": "V3"}:
        grpc = [{"envoy_grpc": {"cluster_name": "xds"}}]
        source = {"api_type": "GRPC", "transport_api_version": "V3", "grpc_services": grpc}
        return {"api_config_source": source, "resource_api_version": "V3"}
    return {k: _grpc_sds(v) for k, v in value.items()}


def envoy_validate(bootstrap: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    return subprocess.run(
        [
            ENVOY,
            "--mode",
            "validate",
            "-c",
            str(path),
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "-l",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("case", sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml")))
def test_envoy_accepts_translation(case: str, tmp_path: Path) -> None:
    bootstrap = static_bootstrap(load_case(GOLDEN, case).text)  # without the GoldenCase header
    proc = envoy_validate(bootstrap, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# (regex, accepted): what Mecha refuses is exactly what a real Envoy refuses, at the edges too
REGEX_CASES = [
    ("/api/v[0-9]+/.*", True),
    ("(?i)/admin.*", True),
    ("/a{95}", True),  # RE2 program size 100: Envoy's limit
    ("/a{96}", False),  # program size 101
    ("/(?=x).*", False),  # lookahead is not RE2
    ("/(a", False),
    ("/x{1001}", False),  # RE2's repetition limit
    ("/(\\d+)\\1", False),  # back-references are not RE2
]


@pytest.mark.parametrize(("regex", "accepted"), REGEX_CASES)
def test_regex_refused_exactly_when_envoy_refuses_it(regex: str, accepted: bool, tmp_path: Path) -> None:
    quoted = json.dumps(regex)[1:-1]  # YAML double-quoted string
    result = compile_text(REGEX_VS.replace("REGEX", quoted))
    assert result.ok is accepted, [str(d) for d in errors(result)]
    if not accepted:
        (problem,) = errors(result)
        assert problem.field == "spec.http[0].match[0].uri.regex" and problem.code == "bad-regex", problem
    # the same route with a good regex, then the regex swapped in: what Envoy makes of it
    bootstrap = json.loads(json.dumps(static_bootstrap(REGEX_VS.replace("REGEX", "/placeholder"))))
    text = json.dumps(bootstrap).replace("/placeholder", quoted)
    proc = envoy_validate(json.loads(text), tmp_path)
    assert (proc.returncode == 0) is accepted, proc.stdout + proc.stderr
