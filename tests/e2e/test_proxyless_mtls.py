"""Proxyless gRPC on both ends with mesh mTLS (issue #14 item 9): a grpcio xDS client and a grpcio xDS server
(`grpc.server(xds=True)`), each with its own `mecha agent` (xDS through the agent's Unix socket, certificates
in the agent's --cert-dir read by gRPC's file_watcher provider), the control plane with its CA and credentials
required (no --insecure-xds). Calls succeed over mTLS and the server sees the client's SPIFFE identity; a
DISABLE PeerAuthentication lets a plaintext client in, a STRICT one shuts it out again; an AuthorizationPolicy
that allows another identity refuses the client (gRPC's RBAC filter).

Run in order (module state: one control plane, the policy file changes between tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from xds.agent.launch import issue_for
from xds.cli.main import main as mecha
from xds.testing.envoy import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
TARGET = "xds:///greeter:50051"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"


def _mesh(server_port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: greeter, namespace: default}}
spec:
  hosts: [greeter]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]
  workloadSelector: {{labels: {{app: greeter}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: greeter-v1, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{grpc: {server_port}}}
  labels: {{app: greeter, version: v1}}
  serviceAccount: greeter
"""


PEER_AUTH = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: greeter, namespace: default}
spec:
  selector: {matchLabels: {app: greeter}}
  mtls: {mode: %s}
"""
ALLOW_OTHERS = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: greeter, namespace: default}
spec:
  selector: {matchLabels: {app: greeter}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/someone-else]}}]}]
"""


@dataclass
class Mesh:
    work: Path
    config: Path
    server_port: int
    client_bootstrap: Path
    log: Path

    def policy(self, text: str) -> None:
        (self.config / "policy.yaml").write_text(text)


async def _wait_ready(url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready; log:\n{log.read_text()[-3000:]}")  # noqa: ASYNC240


async def _spawn(procs: list[asyncio.subprocess.Process], log: Path, *argv: str, **env: str) -> None:
    with log.open("ab") as out:
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable, *argv, stdout=out, stderr=out, env={**os.environ, **env}
            )
        )


async def _agent_and_bootstrap(
    procs: list[asyncio.subprocess.Process], work: Path, xds: str, proxy_id: str, labels: dict[str, str]
) -> Path:
    """The workload's credential, its agent (sockets, certificate files) and its gRPC bootstrap."""
    meta = {"mode": "proxyless", "namespace": "default", "labels": labels}
    credential = issue_for(work, proxy_id, meta)
    sockets, certs = work / "s" / proxy_id, work / "certs" / proxy_id
    argv = ["-m", "xds.cli", "agent", "--credential", str(credential), "--control-plane", xds,
            "--root-cert", str(work / "ca" / "root-cert.pem"), "--socket-dir", str(sockets),
            "--cert-dir", str(certs)]  # fmt: skip
    await _spawn(procs, work / f"agent-{proxy_id}.log", *argv)
    deadline = time.monotonic() + 30
    while not (certs / "cert-chain.pem").exists() or not (sockets / "xds.sock").exists():
        assert time.monotonic() < deadline, (work / f"agent-{proxy_id}.log").read_text()[-2000:]
        await asyncio.sleep(0.1)
    bootstrap = work / f"{proxy_id}.json"
    argv = ["bootstrap", "--mode", "proxyless", "--id", proxy_id, "--xds-uri", f"unix://{sockets}/xds.sock",
            "--cert-dir", str(certs), "-o", str(bootstrap)]  # fmt: skip
    argv += [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
    assert await asyncio.to_thread(mecha, argv) == 0
    return bootstrap


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    work = tmp_path_factory.mktemp("plmtls")
    config = work / "config"
    config.mkdir()
    server_port, api_port, xds_port = free_port(), free_port(), free_port()
    (config / "mesh.yaml").write_text(_mesh(server_port))
    procs: list[asyncio.subprocess.Process] = []
    log = work / "control-plane.log"
    env = {k: v for k, v in os.environ.items() if k != "MECHA_INSECURE_XDS"}
    try:
        with log.open("wb") as out:  # the CA on (the default), credentials required on the xDS port
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "xds.cli",
                    "serve",
                    "--port",
                    str(api_port),
                    "--xds-port",
                    str(xds_port),
                    "--config",
                    str(config),
                    "--state-dir",
                    str(work),
                    "--watch-interval",
                    "0.3",
                    stdout=out,
                    stderr=out,
                    env={**env, "MECHA_CA_DIR": str(work / "ca")},
                )
            )
        await _wait_ready(f"http://127.0.0.1:{api_port}/readyz", log)
        xds = f"127.0.0.1:{xds_port}"
        server = await _agent_and_bootstrap(
            procs, work, xds, "greeter-v1", {"app": "greeter", "version": "v1"}
        )
        client = await _agent_and_bootstrap(procs, work, xds, "client-1", {"app": "client"})
        argv = ["-m", "xds.demo.greeter", "serve", "--xds", "--port", str(server_port), "--version", "v1"]
        await _spawn(procs, work / "greeter.log", *argv, GRPC_XDS_BOOTSTRAP=str(server))
        yield Mesh(work, config, server_port, client, log)
    finally:
        for proc in reversed(procs):
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


async def _call(mesh: Mesh, target: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(mesh.client_bootstrap)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds.demo.greeter", "call", "--target", target, *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def _until(mesh: Mesh, target: str, ok: bool, within: float = 60) -> dict[str, Any]:
    """Single calls until one succeeds (ok) or fails (not ok): a policy change reaches the server."""
    deadline = time.monotonic() + within
    while True:
        got = await _call(mesh, target, "-n", "1", "--within", "5")
        if bool(got["versions"]) == ok:
            return got
        assert time.monotonic() < deadline, (got, (mesh.work / "greeter.log").read_text()[-2000:])
        await asyncio.sleep(0.5)


def _plain(mesh: Mesh) -> str:
    return f"127.0.0.1:{mesh.server_port}"  # straight to the server, no xDS: a plaintext client


async def test_mtls_both_ends_and_the_server_sees_the_client_identity(mesh: Mesh) -> None:
    got = await _call(mesh, TARGET, "-n", "10")
    assert got == {"versions": {"v1": 10}, "errors": {}, "peers": [CLIENT_ID]}, mesh.log.read_text()[-2000:]
    # auto-mTLS (no policy): the server only speaks mTLS, a plaintext client gets nothing
    plain = await _call(mesh, _plain(mesh), "-n", "1", "--within", "5")
    assert plain["versions"] == {} and plain["errors"], plain


async def test_disable_lets_plaintext_in(mesh: Mesh) -> None:
    mesh.policy(PEER_AUTH % "DISABLE")
    got = await _until(mesh, _plain(mesh), ok=True)
    assert got["peers"] == []  # no TLS peer
    # the xDS client follows (auto-mTLS off for a DISABLE endpoint): plaintext, no identity seen
    assert await _call(mesh, TARGET, "-n", "3") == {"versions": {"v1": 3}, "errors": {}, "peers": []}


async def test_strict_shuts_plaintext_out_and_mtls_goes_on(mesh: Mesh) -> None:
    mesh.policy(PEER_AUTH % "STRICT")
    refused = await _until(mesh, _plain(mesh), ok=False)
    assert refused["errors"], refused
    got = await _call(mesh, TARGET, "-n", "5")
    assert got == {"versions": {"v1": 5}, "errors": {}, "peers": [CLIENT_ID]}


async def test_authorization_policy_refuses_other_identities(mesh: Mesh) -> None:
    mesh.policy(PEER_AUTH % "STRICT" + "---\n" + ALLOW_OTHERS)
    deadline = time.monotonic() + 60
    while True:
        got = await _call(mesh, TARGET, "-n", "1", "--within", "5")
        if got["errors"]:
            break
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.5)
    assert got == {"versions": {}, "errors": {"PERMISSION_DENIED": 1}, "peers": []}
