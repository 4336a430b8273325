"""`mecha proxy-config` on any replica (issue #13: any replica answers for the whole fleet).

Two real `mecha serve` replicas (TLS xDS ports, credentials required) on the real PostgreSQL, sharing the keys
`mecha keys init` makes (signing key, CA root, API tokens) as Kubernetes Secrets would. A real agent dials
replica a only, so a holds its admin relay stream, and a real Envoy beside it announces no admin address.
Asked on b, proxy-config is forwarded to a over a's xDS port and answers with the Envoy's own config. The
forwarding method refuses a caller without the replicas' API token (a workload credential included)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from test_replicas import shared_schema

from xds.agent.bootstrap import through_agent
from xds.agent.channel import SERVER_NAME, CredentialSource
from xds.agent.launch import issue_for
from xds.bootstrap import BootstrapParams, render
from xds.cli.main import main as mecha
from xds.controlplane.replica_relay import METHOD as FORWARD_METHOD
from xds.testing.envoy import EnvoyProcess, free_port
from xds.testing.replicas import Replica, running_replicas

pytestmark = [pytest.mark.e2e, pytest.mark.backend, pytest.mark.timeout(180)]

PROXY = "reviews-v1"
META: dict[str, Any] = {
    "mode": "sidecar",
    "namespace": "default",
    "labels": {"app": "reviews", "version": "v1"},
    "apps": [{"name": "reviews", "labels": {"app": "reviews", "version": "v1"}}],
}


@dataclass
class Fleet:
    a: Replica  # holds the agent's streams
    b: Replica
    envoy: EnvoyProcess
    inbound: int


def _bootstrap(xds_port: int, sockets: Path, admin_port: int, inbound: int) -> str:
    """A sidecar bootstrap through the agent's sockets whose node metadata names NO admin address."""
    app = {"name": "reviews", "namespace": "default", "labels": {"app": "reviews", "version": "v1"},
           "app_port": free_port(), "inbound_port": inbound}  # fmt: skip
    metadata = {**META, "outbound_port": free_port(), "apps": [app]}
    text = through_agent(render(BootstrapParams(PROXY, xds_port, admin_port, metadata=metadata)), sockets)
    assert "admin" not in yaml.safe_load(text)["node"]["metadata"]["mecha"]
    return text


async def _until(what: str, check: Any, within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            if found := await check():
                return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {within}s")


@contextlib.asynccontextmanager
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    # the replicas share the keys `mecha keys init` makes: each gets a copy (Secrets in Kubernetes); secure:
    # the relay exists only on a TLS xDS port
    async with shared_schema() as store, running_replicas(store, tmp_path, secure=True) as (a, b):
        sockets = tmp_path / "sockets"
        credential = issue_for(a.state, PROXY, META)
        admin_port, inbound = free_port(), free_port()
        agent_log = tmp_path / "agent.log"
        envoy = EnvoyProcess(_bootstrap(a.xds_port, sockets, admin_port, inbound), tmp_path / "envoy")
        agent: asyncio.subprocess.Process | None = None
        try:
            sockets.mkdir(mode=0o700)
            with agent_log.open("wb") as out:
                agent = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "xds.cli", "agent", "--credential", str(credential),
                    "--control-plane", a.xds, "--root-cert", str(a.state / "ca" / "root-cert.pem"),
                    "--socket-dir", str(sockets), "--envoy-admin", f"127.0.0.1:{admin_port}",
                    stdout=out, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
            await _until("the agent's sockets", _sockets_ready(sockets), 30)
            await envoy.start(wait_ready=False)
            yield Fleet(a, b, envoy, inbound)
        finally:
            await envoy.stop()
            if agent is not None and agent.returncode is None:
                agent.terminate()
                await agent.wait()


def _sockets_ready(sockets: Path) -> Any:
    async def check() -> bool:
        return (sockets / "xds.sock").exists() and (sockets / "sds.sock").exists()

    return check


async def _listed_on(replica: Replica, holder: Replica) -> bool:
    """The replica lists the proxy as SYNCED on `holder` (from the holder's heartbeat when not its own)."""
    status, body = await replica.get("/api/v1/proxies")
    row = next((r for r in body.get("proxies", []) if r.get("proxy_id") == PROXY), None)
    return bool(
        status == 200
        and row
        and row.get("replica") == holder.xds
        and row["types"].get("LDS", {}).get("state") == "SYNCED"
    )


async def _envoy_listener_names(envoy: EnvoyProcess) -> set[str]:
    status, direct = await envoy.admin_get("/config_dump?resource=dynamic_listeners")
    assert status == 200
    return {c["name"] for c in json.loads(direct)["configs"]}


async def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            return mecha(list(argv))

    return await asyncio.to_thread(run), out.getvalue()


async def test_proxy_config_on_the_replica_without_the_agents_stream_answers(tmp_path: Path) -> None:
    async with fleet(tmp_path) as mesh:
        a, b = mesh.a, mesh.b
        await _until("a lists the proxy SYNCED", lambda: _listed_on(a, a))
        await _until("b lists the proxy on a", lambda: _listed_on(b, a))

        async def relayed_on_a() -> bool:  # the relay stream opens beside the ADS stream
            return (await a.get(f"/api/v1/proxies/{PROXY}/config/listeners"))[0] == 200

        await _until("a answers proxy-config through the agent", relayed_on_a, 30)
        status, listeners = await b.get(f"/api/v1/proxies/{PROXY}/config/listeners")
        assert status == 200, (status, listeners, b.tail())
        assert f'"port_value": {mesh.inbound}' in json.dumps(listeners)
        assert {c["name"] for c in listeners["configs"]} == await _envoy_listener_names(mesh.envoy)
        status, short = await b.get(f"/api/v1/proxies/{PROXY}/config/clusters?format=short")
        assert status == 200 and short["proxy"] == PROXY and short["rows"], short
        # the command an operator runs, against b
        code, out = await cli("proxy-config", PROXY, "listeners", "--server", b.api, "--token", b.token)
        assert code == 0, out
        assert {line.split()[0] for line in out.splitlines()[1:]} == await _envoy_listener_names(mesh.envoy)
        # a proxy no replica holds is still not found
        status, body = await b.get("/api/v1/proxies/nobody/config/listeners")
        assert status == 404, body


async def _forward_as(replica: Replica, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    """Calls the replicas' forwarding method on the replica's xDS port with this metadata."""
    root = (replica.state / "ca" / "root-cert.pem").read_bytes()
    creds = grpc.ssl_channel_credentials(root_certificates=root)
    options = [("grpc.ssl_target_name_override", SERVER_NAME)]
    async with grpc.aio.secure_channel(replica.xds, creds, options=options) as channel:
        ask = json.dumps({"proxy_id": PROXY, "path": "/config_dump"}).encode()
        try:
            await channel.unary_unary(FORWARD_METHOD)(ask, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_the_forwarding_method_needs_the_replicas_api_token(tmp_path: Path) -> None:
    async with fleet(tmp_path) as mesh:
        a = mesh.a

        async def relayed_on_a() -> bool:
            return (await a.get(f"/api/v1/proxies/{PROXY}/config/listeners"))[0] == 200

        await _until("a answers proxy-config through the agent", relayed_on_a, 60)
        reader = (a.state / "dapr-reader-token").read_text().strip()  # a token, but not the operator's
        workload = CredentialSource(issue_for(a.state, "ratings-v1", {**META, "labels": {"app": "ratings"}}))
        refused = [(), bearer("not-the-token"), bearer(reader), workload.metadata()]
        for metadata in refused:
            assert await _forward_as(a, metadata) == grpc.StatusCode.UNAUTHENTICATED, metadata
        assert await _forward_as(a, bearer(a.token)) == grpc.StatusCode.OK


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
