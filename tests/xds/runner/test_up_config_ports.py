"""`mecha up --config DIR --port-offset N` names each port of the user's config that the offset did not shift
(file, document, field, the port and where that listener is now); ports that are none of mecha up's are not
the offset's to move and are not named."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from xds.runner.config_ports import moved_ports, unshifted_ports

MESH = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {http: 15300}, labels: {app: ratings, version: v1}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: orders-state, namespace: default}
spec:
  type: state.redis
  version: v1
  metadata:
  - {name: redisHost, value: "127.0.0.1:6379"}
  - {name: callbackUrl, value: "http://127.0.0.1:9081/callback"}
"""


def test_each_unshifted_port_is_named_with_file_document_field_and_its_new_port(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH)
    notes = unshifted_ports([tmp_path], "sidecar", 100)
    assert len(notes) == 2, notes
    inbound, app = notes
    assert (
        f"{tmp_path / 'mesh.yaml'} doc 1 (WorkloadEntry default/ratings-v1) field spec.ports.http" in inbound
    )
    assert "port 15300" in inbound and "ratings-v1 inbound listener is on 15400 now" in inbound, inbound
    assert "doc 2 (Component default/orders-state) field spec.metadata[1].value" in app
    assert "port 9081" in app and "ratings-v1 app is on 9181 now" in app, app


def test_nothing_to_say_without_an_offset_or_a_config(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH)
    assert unshifted_ports([tmp_path], "sidecar", 0) == []
    assert unshifted_ports([], "sidecar", 100) == []


def test_node_mode_ports_move_too() -> None:
    label, now = moved_ports("node", 7)[3500]
    assert label == "ratings-v1 dapr http listener" and now == 3507


def test_mecha_up_prints_the_note_before_it_starts(tmp_path: Path) -> None:
    config = tmp_path / "mine"
    config.mkdir()
    (config / "mesh.yaml").write_text(MESH)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xds.cli", "up", "--config", str(config), "--port-offset", "3000"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(line.startswith("Starting Mecha") for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
    finally:
        proc.send_signal(signal.SIGINT)  # once "Starting Mecha" is out, Ctrl-C stops what was started
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    notes = [line for line in lines if "did not shift port" in line]
    assert len(notes) == 2 and all(n.startswith("note: --port-offset 3000") for n in notes), lines
    assert "port 15300" in notes[0] and "is on 18300 now" in notes[0], notes
