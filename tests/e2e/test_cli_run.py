"""`mecha run` against a real `mecha up` (port offset): a tiny HTTP app started with its sidecar (capability
service + embedded agent + Envoy) joins the mesh; the demo's productpage Envoy and `mecha invoke` reach it by
its app id, `mecha list` shows it; on SIGTERM nothing is left (processes, mesh documents, record,
credential)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mecha_up import MECHA
from test_cli_apps import mecha, up  # noqa: F401  (the module-scoped `mecha up` fixture)

from xds.testing.envoy import free_port

pytestmark = pytest.mark.e2e

APP = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "pid": os.getpid(),
                           "env": {k: os.environ.get(k) for k in ("APP_ID", "APP_PORT", "DAPR_HTTP_PORT",
                                                                  "DAPR_GRPC_PORT")}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("hello-app listening", flush=True)
HTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
"""


def _get(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _config_names(up: dict[str, Any]) -> set[tuple[str, str]]:  # noqa: F811
    api = up["info"]["api"]
    token = (up["folder"] / ".mecha" / "api-token").read_text().strip()
    view = _get(f"{api}/api/v1/config", {"Authorization": f"Bearer {token}"})
    return {(d["kind"], d["name"]) for d in view.get("documents", [])}


def test_run_joins_the_mesh_and_leaves_nothing(up: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    app_file = tmp_path / "hello_app.py"
    app_file.write_text(APP)
    app_port = free_port()
    proc = subprocess.Popen(
        [*MECHA, "run", "--app-id", "hello", "--app-port", str(app_port),
         "--", sys.executable, str(app_file)],
        cwd=up["folder"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "You're up and running" in line:
                break
        assert any("You're up and running" in line for line in lines), "\n".join(lines)
        record_file = up["folder"] / ".mecha" / "run" / "hello.json"
        assert record_file.stat().st_mode & 0o777 == 0o600
        record = json.loads(record_file.read_text())

        # mecha list shows it, started by mecha run
        listed = mecha(up, "list", "-o", "json")
        rows = {r["app_id"]: r for r in json.loads(listed.stdout)}
        assert rows["hello"]["source"] == "mecha run" and rows["hello"]["dapr_http"] == record["dapr_http"]

        # the app got the Dapr ports of its sidecar in its environment
        direct = _get(f"http://127.0.0.1:{app_port}/direct")
        dapr_http = record["dapr_http"].rsplit(":", 1)[1]
        assert direct["env"] == {"APP_ID": "hello", "APP_PORT": str(app_port), "DAPR_HTTP_PORT": dapr_http,
                                 "DAPR_GRPC_PORT": record["dapr_grpc"].rsplit(":", 1)[1]}  # fmt: skip

        # the demo's productpage Envoy reaches it by its app id (the mesh's path, not the app's port)
        via_mesh = _get(f"{up['info']['mesh_entry']}/from-productpage", {"Host": "hello"})
        assert via_mesh["path"] == "/from-productpage" and via_mesh["pid"] == direct["pid"]
        # and `mecha invoke` through a demo app's Dapr API (service invocation by app id)
        invoked = mecha(up, "invoke", "hello", "greet", "--via", "productpage")
        assert invoked.returncode == 0, invoked.stderr
        assert json.loads(invoked.stdout)["path"] == "/greet"
        # the hello app's own Dapr API calls the demo's ratings through the mesh
        ratings = _get(f"{record['dapr_http']}/v1.0/invoke/ratings/method/ratings/1")
        assert ratings["app"] == "ratings"
        assert ("ServiceEntry", "hello") in _config_names(up) and ("WorkloadEntry", "hello") in _config_names(
            up
        )

        started = _descendants(proc.pid)
        assert len(started) >= 3, started  # app, capability service, Envoy
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=40)
        lines += out.splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, "\n".join(lines)
    assert "== APP == hello-app listening" in lines, lines
    assert not [line for line in lines if line.startswith("warning:")], lines  # deleted and revoked
    assert not [pid for pid in started if _alive(pid)], "processes left behind"
    assert not record_file.exists()
    assert not (up["folder"] / ".mecha" / "run" / "hello" / "credential.jwt").exists()
    names = _config_names(up)
    assert ("ServiceEntry", "hello") not in names and ("WorkloadEntry", "hello") not in names
    assert "hello" not in {r["app_id"] for r in json.loads(mecha(up, "list", "-o", "json").stdout)}


def test_run_refuses_bad_input_naming_the_option(up: dict[str, Any]) -> None:  # noqa: F811
    bad_id = mecha(up, "run", "--app-id", "Hello_App", "--app-port", "8080", "--", "true")
    assert bad_id.returncode == 2 and "--app-id 'Hello_App'" in bad_id.stderr, bad_id.stderr
    no_cmd = mecha(up, "run", "--app-id", "hello", "--app-port", "8080")
    assert no_cmd.returncode == 2 and "after `--`" in no_cmd.stderr, no_cmd.stderr
    bad_res = mecha(up, "run", "--app-id", "hello", "--app-port", "8080", "--resources-path", "/nonexistent",
                    "--", "true")  # fmt: skip
    assert bad_res.returncode == 2 and "--resources-path /nonexistent" in bad_res.stderr, bad_res.stderr
