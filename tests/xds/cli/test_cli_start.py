"""The client commands start at once (they import only what they need), find the running mesh by themselves,
exit non-zero on unsynced proxies, end quietly in a closed pipe, and explain every option."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from xds.cli.main import build_parser, main
from xds.testing.envoy import free_port

READY = b'{"status": "ready", "version": 7}'
HEAVY = ("grpc", "envoy_data_plane", "aiohttp", "networkx", "cryptography", "pydantic", "betterproto2")

# Runs one command in a fresh interpreter, then reports which heavy packages it had imported.
PROBE = """
import json, sys
from xds.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(%r)))
print(json.dumps(heavy), file=sys.stderr)
"""


def _loaded_heavy(argv: list[str], cwd: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE % json.dumps(HEAVY), *argv],
        capture_output=True, text=True, timeout=60, cwd=cwd, env={**os.environ, "MECHA_STATE_DIR": ""},
    )  # fmt: skip
    return json.loads(proc.stderr.strip().splitlines()[-1])


class FakeControlPlane:
    """An HTTP API answering GET /api/v1/proxies and /readyz with canned JSON (the CLI's side only)."""

    def __init__(self, proxies: list[dict[str, Any]]) -> None:
        body = json.dumps({"proxies": proxies, "warnings": []}).encode()
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                data = (
                    body if self.path.startswith("/api/v1/proxies") else b'{"status": "ready", "version": 7}'
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _row(pid: str, **types: str) -> dict[str, Any]:
    return {"proxy_id": pid, "mode": "sidecar", "config_version": 3,
            "types": {t: {"state": s, "nack_message": "bad route" if s == "NACKED" else ""}
                      for t, s in types.items()}}  # fmt: skip


@pytest.fixture
def synced_plane() -> Iterator[FakeControlPlane]:
    plane = FakeControlPlane([_row(f"p{i:03}", CDS="SYNCED", LDS="SYNCED") for i in range(400)])
    yield plane
    plane.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["apply", "--help"],
        ["version"],
        ["proxy-status"],
        ["diff", "-f", "MESH"],
        ["apply", "-f", "MESH"],
        ["get", "gateways,httproutes", "-A"],
    ],
)
def test_client_commands_import_no_heavy_package(argv: list[str], tmp_path: Path) -> None:
    mesh = tmp_path / "vs.yaml"
    mesh.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {}\n"
    )
    server = f"http://127.0.0.1:{free_port()}"  # nobody listens: the command fails after its imports
    argv = [str(mesh) if a == "MESH" else a for a in argv]
    if argv[0] != "--help" and "--help" not in argv:
        argv += ["--server", server]
    assert _loaded_heavy(argv, tmp_path) == []


def test_every_option_has_help_and_every_command_an_example() -> None:
    from xds.cli.options import subparsers

    for name, parser in subparsers(build_parser()):
        assert parser.epilog and "example:" in parser.epilog, name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"mecha {name} {action.option_strings or action.dest}: no help"
    text = subprocess.run(
        [sys.executable, "-m", "xds.cli", "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "(default: 15010)" in text and "example:\n  mecha serve" in text


def test_log_level_is_accepted_after_the_command() -> None:
    args = build_parser().parse_args(["serve", "--log-level", "debug"])
    assert args.log_level == "debug"
    assert build_parser().parse_args(["--log-level", "error", "serve"]).log_level == "error"
    assert build_parser().parse_args(["serve"]).log_level == "info"


@pytest.mark.parametrize(
    ("types", "code"),
    [({"CDS": "SYNCED", "LDS": "SYNCED"}, 0), ({"CDS": "SYNCED", "LDS": "NACKED"}, 1),
     ({"CDS": "STALE", "LDS": "SYNCED"}, 1)],
)  # fmt: skip
def test_proxy_status_exits_non_zero_when_a_proxy_is_nacked_or_stale(
    types: dict[str, str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    plane = FakeControlPlane([_row("a", CDS="SYNCED", LDS="SYNCED"), _row("b", **types)])
    try:
        assert main(["proxy-status", "--server", plane.url]) == code
        assert main(["proxy-status", "--server", plane.url, "-o", "json"]) == code
    finally:
        plane.close()
    assert "PROXY" in capsys.readouterr().out


def test_output_into_a_closed_pipe_ends_quietly(synced_plane: FakeControlPlane) -> None:
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.run(
        [sys.executable, "-m", "xds.cli", "proxy-status", "--server", synced_plane.url],
        stdout=reader.stdin, stderr=subprocess.PIPE, text=True, timeout=60,
    )  # fmt: skip
    assert reader.stdin is not None
    reader.stdin.close()
    assert reader.stdout is not None
    first = reader.stdout.read().decode()
    reader.wait(timeout=30)
    assert first.startswith("PROXY")
    assert "Traceback" not in writer.stderr and "BrokenPipe" not in writer.stderr, writer.stderr
    assert writer.returncode in (0, 141)


def _write_up_json(folder: Path, api: str, pid: int) -> None:
    state = folder / ".mecha"
    state.mkdir(mode=0o700)
    (state / "up.json").write_text(json.dumps({"pid": pid, "api": api, "status": "up"}))


def test_client_finds_the_running_mesh_from_up_json(synced_plane: FakeControlPlane, tmp_path: Path) -> None:
    _write_up_json(tmp_path, synced_plane.url, os.getpid())  # this process stands in for `mecha up`
    nested = tmp_path / "config" / "deeper"
    nested.mkdir(parents=True)
    env = {**os.environ, "MECHA_SERVER": f"http://127.0.0.1:{free_port()}", "MECHA_STATE_DIR": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "xds.cli", "proxy-status"], cwd=nested, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "p000" in proc.stdout and synced_plane.paths == ["/api/v1/proxies"]


def test_a_stale_up_json_falls_back_to_mecha_server(synced_plane: FakeControlPlane, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_up_json(tmp_path, f"http://127.0.0.1:{free_port()}", dead.pid)
    env = {**os.environ, "MECHA_SERVER": synced_plane.url, "MECHA_STATE_DIR": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "xds.cli", "proxy-status"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert synced_plane.paths == ["/api/v1/proxies"]


def test_version_names_client_and_control_plane(synced_plane: FakeControlPlane,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["version", "--server", synced_plane.url]) == 0
    out = capsys.readouterr().out
    assert "client version: 0." in out and f"control plane: {synced_plane.url} ready, config version 7" in out
