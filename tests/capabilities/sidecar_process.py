"""A real `python -m capabilities` process for tests: start, wait until it listens, speak HTTP/gRPC, stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from capability_testkit import server_answers

from xds.testing.envoy import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SidecarProcess:
    app_id: str
    http_port: int
    grpc_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(self, method: str, path: str, body: bytes | None = None, **headers: str) -> HttpAnswer:
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return HttpAnswer(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return HttpAnswer(exc.code, exc.read(), dict(exc.headers))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, predicate: Any, what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.app_id} exited: {self.log()[-3000:]}"
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.app_id}: {what} within {timeout_s}s; log:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_sidecar(
    tmp_path: Path, app_id: str, *args: str, grpc: bool = False, env: dict[str, str] | None = None
) -> SidecarProcess:
    """Start the service; returns once its HTTP port accepts connections (not once it is ready)."""
    http_port = free_port()
    grpc_port = free_port() if grpc else 0
    log_path = tmp_path / f"{app_id}-{http_port}.log"
    cmd = [sys.executable, "-m", "capabilities", "--app-id", app_id, "--dapr-http-port", str(http_port),
           "--dapr-grpc-port", str(grpc_port), *args]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            cmd, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        )  # fmt: skip
    sidecar = SidecarProcess(app_id, http_port, grpc_port, process, log_path)
    try:
        sidecar.wait_until(lambda: server_answers("127.0.0.1", http_port), "HTTP port listening")
    except BaseException:
        sidecar.stop()
        raise
    return sidecar


class FakeControlPlane:
    """GET /api/v1/dapr with a fixed answer; a long-poll on the current version is held briefly, then 304."""

    def __init__(self, port: int, payload: dict[str, Any]):
        body = json.dumps(payload).encode()
        version = str(payload["version"])

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if f"wait={version}" in self.path:
                    threading.Event().wait(0.5)
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
