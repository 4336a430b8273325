"""`python -m capabilities` serves the gRPC API on DAPR_GRPC_PORT next to the HTTP API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dapr.clients import DaprClient
from grpc_harness import free_port, write_resources


def test_process_serves_grpc(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    resources = write_resources(tmp_path / "resources")
    http_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "APP_ID": "proc", "DAPR_HTTP_PORT": str(http_port), "DAPR_GRPC_PORT": str(grpc_port)}
    env.pop("DAPR_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "capabilities", "--resources-path", str(resources), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1.0/healthz/outbound", timeout=3):
                    break
            except OSError:  # refused, 500 (HTTPError) or slow while components load
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "capability service did not become healthy"
                time.sleep(0.1)
        for key, value in {"DAPR_HTTP_PORT": str(http_port), "DAPR_GRPC_PORT": str(grpc_port)}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
        with DaprClient() as client:
            client.save_state("statestore", "p", "via-process")
            assert client.get_state("statestore", "p").data == b"via-process"
            assert client.get_metadata().application_id == "proc"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
