"""`mecha up` says what is wrong at once: an Envoy that NACKs the config, or a --config the control plane
refuses, is reported in one readable line with the reason, and nothing is called "up"."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from mecha_up import MECHA, free_offset

from xds.demo.config import default_layout, demo_config

pytestmark = pytest.mark.e2e

# A Gateway server on a port another process holds: the config is valid, the gateway's Envoy cannot bind
# the listener and NACKs the LDS update (what a user meets when a port is taken).
BUSY_GATEWAY_PORT = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: second-gateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http-second, protocol: HTTP}}
    hosts: ['*']
"""

REFUSED = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: split, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 70}
    - {destination: {host: reviews, subset: v2}, weight: 70}
"""


def _up(tmp_path: Path, extra: str, name: str) -> subprocess.CompletedProcess[str]:
    offset = free_offset()
    folder = tmp_path / "mesh"
    folder.mkdir()
    (folder / "demo.yaml").write_text(demo_config(default_layout("sidecar", offset)))
    (folder / name).write_text(extra)
    return subprocess.run(
        [*MECHA, "up", "--config", str(folder), "--port-offset", str(offset), "--timeout", "25"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_envoy_nack_during_start_is_one_line_with_envoys_message(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = _up(tmp_path, BUSY_GATEWAY_PORT.format(port=port), "second-gateway.yaml")
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Mecha is up" not in text, text
    failed = [line for line in text.splitlines() if line.startswith("mecha up failed:")]
    assert len(failed) == 1, text
    line = failed[0]
    assert "ingressgateway refused the LDS config (NACK):" in line, text
    assert f"127.0.0.1:{port}" in line and "bind" in line, line  # Envoy's own words, on the same line
    assert "not SYNCED in time" not in text, text  # reported at once, not at the timeout
    assert "all processes stopped" in text


def test_a_refused_config_folder_stops_the_start_and_names_file_and_reason(tmp_path: Path) -> None:
    out = _up(tmp_path, REFUSED, "split.yaml")
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Mecha is up" not in text and "[ready] envoy" not in text, text
    failed = [line for line in text.splitlines() if line.startswith("mecha up failed:")]
    assert len(failed) == 1, text
    assert "refused the config of" in failed[0] and "split.yaml" in failed[0], text
    assert "weight" in failed[0], text
