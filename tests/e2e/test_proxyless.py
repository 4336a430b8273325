"""Proxyless gRPC through Mecha (issue #14 item 9): grpcio's own xDS client (`xds:///greeter:50051`,
GRPC_XDS_BOOTSTRAP written by `mecha bootstrap --mode proxyless`), no Envoy in the path, against two real
greeter versions. Weighted routing within a tolerance, a header match, a retry of a failing first attempt,
and a change applied while a client runs.

Each client is its own process: gRPC reads the bootstrap once per process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from protocol_rig import Rig, rig

from xds.cli.main import main as mecha
from xds.testing.envoy import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
TARGET = "xds:///greeter:50051"


def _mesh(v1: int, v2: int, flaky: int, weights: tuple[int, int] = (80, 20)) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: greeter, namespace: default}}
spec:
  hosts: [greeter]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{grpc: {v1}}}, labels: {{app: greeter, version: v1}}}}
  - {{address: 127.0.0.1, ports: {{grpc: {v2}}}, labels: {{app: greeter, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: greeter, namespace: default}}
spec:
  host: greeter
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: greeter, namespace: default}}
spec:
  hosts: [greeter]
  http:
  - match: [{{headers: {{x-canary: {{exact: "yes"}}}}}}]
    route: [{{destination: {{host: greeter, subset: v2}}}}]
  - route:
    - {{destination: {{host: greeter, subset: v1}}, weight: {weights[0]}}}
    - {{destination: {{host: greeter, subset: v2}}, weight: {weights[1]}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: flaky, namespace: default}}
spec:
  hosts: [flaky, flaky-noretry]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 50052, name: grpc, protocol: GRPC}}]
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {flaky}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: flaky, namespace: default}}
spec:
  hosts: [flaky]
  http: [{{route: [{{destination: {{host: flaky}}}}], retries: {{attempts: 3, retryOn: unavailable}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: flaky-noretry, namespace: default}}
spec:
  hosts: [flaky-noretry]
  http: [{{route: [{{destination: {{host: flaky-noretry}}}}], retries: {{attempts: 0}}}}]
"""


class Greeters:
    def __init__(self) -> None:
        self.v1, self.v2, self.flaky = free_port(), free_port(), free_port()
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        for port, version, extra in (
            (self.v1, "v1", []),
            (self.v2, "v2", []),
            (self.flaky, "v1", ["--fail-first"]),
        ):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "xds.demo.greeter", "serve", "--port", str(port), "--version", version,
                *extra, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            self.procs.append(proc)
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 15)
            assert b"listening" in line, line

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Rig, Greeters, Path]]:
    work = tmp_path_factory.mktemp("proxyless")
    greeters = Greeters()
    await greeters.start()
    try:
        async with rig(work) as r:
            await r.apply(_mesh(greeters.v1, greeters.v2, greeters.flaky))
            bootstrap = work / "client.json"
            argv = ["bootstrap", "--mode", "proxyless", "--id", "greeter-client", "--label", "app=client"]
            argv += ["--xds-port", str(r.xds_port), "-o", str(bootstrap)]
            assert await asyncio.to_thread(mecha, argv) == 0
            yield r, greeters, bootstrap
    finally:
        await greeters.stop()


async def _client(bootstrap: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds.demo.greeter", "call", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def test_bootstrap_is_grpc_xds_json(mesh: tuple[Rig, Greeters, Path]) -> None:
    r, _, bootstrap = mesh
    doc = json.loads(bootstrap.read_text())
    assert doc["xds_servers"][0]["server_uri"] == f"127.0.0.1:{r.xds_port}"
    assert doc["node"]["metadata"]["GENERATOR"] == "grpc"
    assert doc["node"]["id"] == "greeter-client"


async def test_weighted_80_20(mesh: tuple[Rig, Greeters, Path]) -> None:
    _, _, bootstrap = mesh
    got = await _client(bootstrap, "--target", TARGET, "-n", "400")
    assert got["errors"] == {}, got
    v1 = got["versions"].get("v1", 0)
    assert 400 * 0.7 <= v1 <= 400 * 0.9, got  # 80 % of 400 = 320; binomial sd is 8, tolerance is 10 sd
    assert got["versions"].get("v2", 0) == 400 - v1


async def test_header_match_routes_to_v2(mesh: tuple[Rig, Greeters, Path]) -> None:
    _, _, bootstrap = mesh
    got = await _client(bootstrap, "--target", TARGET, "-n", "30", "--header", "x-canary=yes")
    assert got == {"versions": {"v2": 30}, "errors": {}, "peers": []}


async def test_retry_succeeds_after_a_failing_first_attempt(mesh: tuple[Rig, Greeters, Path]) -> None:
    _, _, bootstrap = mesh
    retried = await _client(bootstrap, "--target", "xds:///flaky:50052", "-n", "10")
    assert retried == {"versions": {"v1": 10}, "errors": {}, "peers": []}
    # the same server without retries: every call fails, so the retries above did the work
    refused = await _client(bootstrap, "--target", "xds:///flaky-noretry:50052", "-n", "5")
    assert refused == {"versions": {}, "errors": {"UNAVAILABLE": 5}, "peers": []}


async def test_live_change_reaches_a_running_client(mesh: tuple[Rig, Greeters, Path]) -> None:
    r, g, bootstrap = mesh
    # a running client: it first sees v1 (weight 100 % v1), then must see v2 once the change is applied
    await r.apply(_mesh(g.v1, g.v2, g.flaky, weights=(100, 0)))
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds.demo.greeter", "call", "--target", TARGET, "--until-version", "v2",
        "--within", "60", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(3)  # let it run on the first config (it would exit at once if v2 answered)
    assert proc.returncode is None
    await r.apply(_mesh(g.v1, g.v2, g.flaky, weights=(0, 100)))
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    got = json.loads(out.decode().strip().splitlines()[-1])
    assert got["versions"].get("v2") == 1 and got["versions"].get("v1", 0) > 0, (got, err.decode()[-1500:])
