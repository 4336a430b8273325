"""Nothing lost: a control plane killed with SIGKILL comes back with every document `mecha apply` sent.

Real processes throughout: `mecha serve --state-dir` (subprocess), the `mecha apply` CLI, a real Envoy fed by
the restarted control plane, and a capability service (`python -m capabilities`) that loads the applied
state-store Component from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from xds.cli.main import main as mecha
from xds.controlplane.auth import ENV_CONTROL_PLANE_TOKEN_FILE, READER_TOKEN_FILE, auth_headers
from xds.statedir import ENV_STATE_DIR
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e]

CONFIG = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.in-memory, version: v1}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web]
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 127.0.0.1, ports: {http: 9}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: kept-after-restart
    route: [{destination: {host: web}}]
"""


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def _wait_http(url: str, proc: asyncio.subprocess.Process, log: Path, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"{url}: exited with {proc.returncode}: {_tail(log)}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered 200: {_tail(log)}")


@contextlib.asynccontextmanager
async def _process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _serve_argv(state: Path, api_port: int, xds_port: int) -> list[str]:
    return [
        sys.executable, "-m", "xds.cli", "serve", "--port", str(api_port), "--xds-port", str(xds_port),
        "--state-dir", str(state),
    ]  # fmt: skip


async def _get_json(url: str, state: Path) -> Any:
    headers = auth_headers(state)  # the operator's token the control plane wrote in its state folder
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=headers) as session:
        async with session.get(url) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


def _documents(view: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    docs = view["documents"]
    return [(d["kind"], d["name"], d["source"], json.dumps(d["body"], sort_keys=True)) for d in docs]


async def test_applied_config_survives_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv(ENV_STATE_DIR, str(state))  # the CLI finds the API token there
    api_port, xds_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    log = tmp_path / "control-plane.log"
    config_file = tmp_path / "applied.yaml"
    config_file.write_text(CONFIG)

    # plaintext xDS: this test's Envoy has no workload credential (xds/identity); the store is what is tested
    serve_env = {"MECHA_INSECURE_XDS": "1"}
    async with _process(_serve_argv(state, api_port, xds_port), log, serve_env) as first:
        await _wait_http(api + "/readyz", first, log)
        out = io.StringIO()

        def apply() -> int:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                return mecha(["apply", "-f", str(config_file), "--server", api])

        assert await asyncio.to_thread(apply) == 0, out.getvalue()
        before = await _get_json(api + "/api/v1/config", state)
        assert before["version"] >= 1 and len(before["documents"]) == 3
        os.kill(first.pid, signal.SIGKILL)
        await first.wait()

    async with _process(_serve_argv(state, api_port, xds_port), log, serve_env) as second:
        await _wait_http(api + "/readyz", second, log)
        after = await _get_json(api + "/api/v1/config", state)
        assert after["version"] == before["version"]
        assert _documents(after) == _documents(before)

        # a real Envoy connected to the restarted control plane gets the applied VirtualService's route
        app = {"name": "client", "app_port": free_port(), "inbound_port": free_port()}
        metadata = {"mode": "sidecar", "namespace": "default", "outbound_port": free_port(), "apps": [app]}
        bootstrap, _admin = bootstrap_for("client-1", xds_port, metadata)
        envoy = EnvoyProcess(bootstrap, tmp_path / "envoy", name="client")
        await envoy.start()
        try:
            deadline = time.monotonic() + 20
            dump = ""
            while time.monotonic() < deadline:
                _, dump = await envoy.admin_get("/config_dump")  # inline or RDS routes
                if "kept-after-restart" in dump:
                    break
                await asyncio.sleep(0.2)
            assert "kept-after-restart" in dump, dump[-2000:]
        finally:
            await envoy.stop()

        # a capability service started against it loads the applied state store and serves state calls
        dapr_http = free_port()
        argv = [sys.executable, "-m", "capabilities", "--app-id", "client",
                "--dapr-http-port", str(dapr_http), "--dapr-grpc-port", str(free_port()),
                "--control-plane", api]  # fmt: skip
        reader = {ENV_CONTROL_PLANE_TOKEN_FILE: str(state / READER_TOKEN_FILE)}
        capabilities_log = tmp_path / "capabilities.log"
        async with _process(argv, capabilities_log, reader) as capabilities:
            dapr = f"http://127.0.0.1:{dapr_http}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                deadline = time.monotonic() + 30
                saved: tuple[int, str] = (0, "no answer")
                while saved[0] != 204 and time.monotonic() < deadline:
                    assert capabilities.returncode is None, _tail(capabilities_log)
                    try:  # retried until the service listens and has loaded its components
                        async with session.post(
                            dapr + "/v1.0/state/statestore", json=[{"key": "k", "value": "kept"}]
                        ) as resp:
                            saved = resp.status, await resp.text()
                    except (aiohttp.ClientError, OSError):
                        pass
                    await asyncio.sleep(0.2)
                assert saved[0] == 204, (saved, _tail(capabilities_log))
                async with session.get(dapr + "/v1.0/state/statestore/k") as resp:
                    assert resp.status == 200 and await resp.json() == "kept"
