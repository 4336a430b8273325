"""A whole `mecha up` with MECHA_MTLS=1 (issue #11): every DiscoveryResponse the control plane sent to any
Envoy, recorded by the agents that forward them (MECHA_AGENT_RECORD_DIR), holds no private key, while the
workloads do speak mTLS with keys their agents made."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls
from mecha_up import free_offset, read_until

from xds.agent.xdsproxy import ENV_RECORD_DIR, read_recording
from xds.demo.config import default_layout
from xds.server.codec import decode_sotw_response
from xds.translate.security.mtls import SDS_CLUSTER

pytestmark = pytest.mark.e2e


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(resp.status)


def test_no_discovery_response_of_a_whole_mecha_up_with_mtls_holds_a_private_key(tmp_path: Path) -> None:
    offset = free_offset()
    recorded = tmp_path / "recorded"
    env = {**os.environ, "MECHA_MTLS": "1", "MECHA_CERT_TTL": "6", ENV_RECORD_DIR: str(recorded)}
    env.pop("MECHA_INSECURE_XDS", None)
    up = [sys.executable, "-m", "xds.cli", "up", "--port-offset", str(offset)]
    proc = subprocess.Popen(
        up, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        read_until(proc, "Mecha is up", 150)
        layout = default_layout("sidecar", offset)
        assert layout.gateway is not None
        entry = f"{layout.gateway.url}/productpage"
        deadline = time.monotonic() + 8  # past a rotation of every workload certificate (6 s, at half)
        served = 0
        while time.monotonic() < deadline:
            served += _get(entry) == 200
            time.sleep(0.2)
        assert served > 10
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    files = {p.stem: p for p in recorded.glob("*.xds")}
    expected = {p.id for p in layout.proxies} | {layout.gateway.id}
    assert expected <= set(files), f"no recording for {expected - set(files)}"
    responses = 0
    sds_references = 0
    for proxy, path in files.items():
        assert path.stat().st_mode & 0o777 == 0o600
        for raw in read_recording(path):
            responses += 1
            assert b"PRIVATE KEY" not in raw, f"{proxy}: a DiscoveryResponse carries a private key"
            decoded = decode_sotw_response(raw)
            for resource in decoded.resources:
                assert b"PRIVATE KEY" not in resource.body
                if resource.type_url.endswith("Secret"):
                    secret = tls.Secret.parse(resource.body)
                    key = secret.tls_certificate.private_key if secret.tls_certificate else None
                    assert key is None or not (key.inline_bytes or key.inline_string), proxy
            sds_references += SDS_CLUSTER.encode() in raw
    assert responses >= 4 * len(files)
    assert sds_references > 0, "mTLS was on: listeners and clusters point at the agents' SDS"
