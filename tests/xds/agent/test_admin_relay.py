"""`mecha proxy-config` through the agent's admin relay (issue #10: Envoy admin on loopback everywhere, the
control plane reads it through an authenticated path, not the network).

Real `mecha serve` (TLS xDS port, credentials required), a real `mecha agent --envoy-admin` and a real Envoy
whose bootstrap announces no admin address: proxy-config answers from the Envoy through the agent. An
attacker's stream without a credential, or with another proxy's, gets nothing and cannot take the proxy's
relay; a control plane asking the agent for /quitquitquit or a POST is refused and Envoy stays up."""

from __future__ import annotations

import asyncio
import contextlib
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
from agent_helpers import ServedControlPlane, served_control_plane

from xds.agent.adminrelay import METHOD, PROXY_ID_METADATA, AdminRelayClient, refusal
from xds.agent.bootstrap import through_agent
from xds.agent.channel import SERVER_NAME, CredentialSource
from xds.bootstrap import BootstrapParams, render
from xds.controlplane.adminrelay import AdminRelays
from xds.identity.authenticator import CredentialAuthenticator
from xds.identity.credential import CredentialIssuer, CredentialVerifier
from xds.identity.revocation import RevocationList
from xds.testing.envoy import EnvoyProcess, free_port

pytestmark = pytest.mark.timeout(120)

RATINGS_META: dict[str, Any] = {
    "mode": "sidecar",
    "namespace": "default",
    "labels": {"app": "ratings"},
    "apps": [{"name": "ratings", "labels": {"app": "ratings"}}],
}


@dataclass
class RelayedProxy:
    cp: ServedControlPlane
    token: str  # the operator's API token
    envoy: EnvoyProcess
    admin: str
    inbound: int
    credential: Path


def _bootstrap(cp: ServedControlPlane, sockets: Path, admin_port: int, inbound: int) -> str:
    """A sidecar bootstrap through the agent's sockets whose node metadata names NO admin address."""
    app = {"name": "reviews", "namespace": "default", "labels": {"app": "reviews", "version": "v1"},
           "app_port": free_port(), "inbound_port": inbound}  # fmt: skip
    metadata = {"mode": "sidecar", "namespace": "default", "labels": {"app": "reviews", "version": "v1"},
                "outbound_port": free_port(), "apps": [app]}  # fmt: skip
    rendered = render(BootstrapParams("reviews-v1", cp.xds_port, admin_port, metadata=metadata))
    text = through_agent(rendered, sockets)
    assert "admin" not in yaml.safe_load(text)["node"]["metadata"]["mecha"]
    return text


async def _api(proxy: RelayedProxy, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {proxy.token}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=15)) as session:
        async with session.get(f"http://127.0.0.1:{proxy.cp.api_port}{path}") as resp:
            return resp.status, await resp.json(content_type=None)


async def _wait_synced(proxy: RelayedProxy, agent_log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = await _api(proxy, "/api/v1/proxies")
        row = next((r for r in body.get("proxies", []) if r.get("proxy_id") == "reviews-v1"), None)
        if status == 200 and row and "SYNCED" in json.dumps(row.get("types")):
            return
        await asyncio.sleep(0.1)
    tail = agent_log.read_text()[-2000:]  # noqa: ASYNC240 - the failure message
    raise AssertionError(f"reviews-v1 never synced; agent log:\n{tail}")


@contextlib.asynccontextmanager
async def relayed_proxy(tmp_path: Path) -> AsyncIterator[RelayedProxy]:
    async with served_control_plane(tmp_path / "cp", {}) as cp:
        credential = cp.credential("reviews-v1")
        sockets = credential.parent
        admin_port, inbound = free_port(), free_port()
        admin = f"127.0.0.1:{admin_port}"
        agent_log = tmp_path / "agent.log"
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds.cli", "agent", "--credential", str(credential), "--control-plane",
            cp.xds, "--root-cert", str(cp.root), "--socket-dir", str(sockets), "--envoy-admin", admin,
            stdout=agent_log.open("wb"), stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        envoy = EnvoyProcess(_bootstrap(cp, sockets, admin_port, inbound), tmp_path / "envoy")
        try:
            for _ in range(300):
                if (sockets / "xds.sock").exists() and (sockets / "sds.sock").exists():
                    break
                await asyncio.sleep(0.1)
            await envoy.start(wait_ready=False)
            token = (cp.state / "api-token").read_text().strip()
            proxy = RelayedProxy(cp, token, envoy, admin, inbound, credential)
            await _wait_synced(proxy, agent_log)
            yield proxy
        finally:
            await envoy.stop()
            agent.terminate()
            await agent.wait()


async def _relayed_listeners(proxy: RelayedProxy) -> dict[str, Any]:
    """proxy-config listeners once the agent's relay stream is open (it opens beside the ADS stream)."""
    deadline = time.monotonic() + 20
    while True:
        status, body = await _api(proxy, "/api/v1/proxies/reviews-v1/config/listeners")
        if status == 200 or time.monotonic() > deadline:
            assert status == 200, body
            return dict(body)
        await asyncio.sleep(0.1)


async def test_proxy_config_reads_an_envoy_that_announces_no_admin_address(tmp_path: Path) -> None:
    async with relayed_proxy(tmp_path) as proxy:
        listeners = await _relayed_listeners(proxy)
        assert f'"port_value": {proxy.inbound}' in json.dumps(listeners)
        status, clusters = await _api(proxy, "/api/v1/proxies/reviews-v1/config/clusters")
        assert status == 200 and clusters.get("configs"), clusters
        status, short = await _api(proxy, "/api/v1/proxies/reviews-v1/config/endpoints?format=short")
        assert status == 200 and short["proxy"] == "reviews-v1", short
        # what the API answered is what Envoy itself holds (its loopback admin, read here directly)
        status, direct = await proxy.envoy.admin_get("/config_dump?resource=dynamic_listeners")
        assert status == 200
        names = {c["name"] for c in json.loads(direct)["configs"]}
        assert names == {c["name"] for c in listeners["configs"]}


def _attacker_channel(cp: ServedControlPlane) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(root_certificates=cp.root.read_bytes())
    return grpc.aio.secure_channel(cp.xds, creds, options=[("grpc.ssl_target_name_override", SERVER_NAME)])


async def _open_as(cp: ServedControlPlane, metadata: tuple[tuple[str, str], ...]) -> object:
    """Opens an AdminRelay stream with this metadata: the refusal's status, else what reading it gave (a
    request, or EOF when the stream was admitted and then replaced)."""
    async with _attacker_channel(cp) as channel:
        call = channel.stream_stream(METHOD)(metadata=metadata)
        try:
            return await asyncio.wait_for(call.read(), 10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            call.cancel()


async def test_a_relay_stream_without_a_credential_or_with_another_proxys_is_refused(tmp_path: Path) -> None:
    async with relayed_proxy(tmp_path) as proxy:
        await _relayed_listeners(proxy)
        cp = proxy.cp
        assert await _open_as(cp, ()) == grpc.StatusCode.UNAUTHENTICATED
        forged = ("authorization", "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJyZXZpZXdzLXYxIn0.AAAA")
        forged_claim = (forged, (PROXY_ID_METADATA, "reviews-v1"))
        assert await _open_as(cp, forged_claim) == grpc.StatusCode.UNAUTHENTICATED
        # ratings' credential, claiming to be reviews-v1: refused before anything is sent
        ratings = CredentialSource(cp.credential("ratings-v1", RATINGS_META))
        claim = (*ratings.metadata(), (PROXY_ID_METADATA, "reviews-v1"))
        assert await _open_as(cp, claim) == grpc.StatusCode.PERMISSION_DENIED
        # ratings' credential as itself: a stream for ratings-v1, which reviews-v1's reads never reach
        async with _attacker_channel(cp) as channel:
            call = channel.stream_stream(METHOD)(metadata=ratings.metadata())
            reader = asyncio.ensure_future(call.read())
            for _ in range(3):
                listeners = await _relayed_listeners(proxy)  # still answered by reviews-v1's own agent
                assert f'"port_value": {proxy.inbound}' in json.dumps(listeners)
            await asyncio.sleep(0.5)
            assert not reader.done(), "a stream of ratings-v1 received a request"
            reader.cancel()
            call.cancel()


async def _rogue_control_plane(state: Path) -> tuple[grpc.aio.Server, AdminRelays, int]:
    """The control plane's relay service alone, on a plaintext port: it asks the agent whatever it likes."""
    verifier = CredentialVerifier(CredentialIssuer.load_or_create(state).public_key)
    relays = AdminRelays(CredentialAuthenticator(verifier, RevocationList.in_state_dir(state)))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((relays.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, relays, port


async def test_the_agent_refuses_quitquitquit_and_posts_and_envoy_stays_up(tmp_path: Path) -> None:
    async with relayed_proxy(tmp_path) as proxy:
        server, relays, port = await _rogue_control_plane(proxy.cp.state)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        agent = AdminRelayClient(channel, CredentialSource(proxy.credential), "reviews-v1", proxy.admin)
        relay = asyncio.create_task(agent.run())
        try:
            for _ in range(100):
                if relays.connected("reviews-v1"):
                    break
                await asyncio.sleep(0.05)
            assert relays.connected("reviews-v1")
            status, body = await relays.get("reviews-v1", "/server_info")
            assert status == 200 and json.loads(body)["state"] == "LIVE"
            destructive = ["/quitquitquit", "/drain_listeners", "/logging?level=trace", "/healthcheck/fail",
                           "//quitquitquit", "/ready/../quitquitquit", "/%71uitquitquit", "/QUITQUITQUIT",
                           f"http://{proxy.admin}/quitquitquit", "/stats\r\n\r\nPOST /quitquitquit",
                           "quitquitquit", "/reset_counters", "/runtime_modify?x=1"]  # fmt: skip
            for path in destructive:
                status, body = await relays.get("reviews-v1", path)
                assert status == 403, (path, status, body)
            for method in ("POST", "PUT", "DELETE", "post"):
                for path in ("/quitquitquit", "/ready", "/config_dump"):
                    status, body = await relays.get("reviews-v1", path, method=method)
                    assert status == 405, (method, path, status, body)
            assert agent.refused == len(destructive) + 12
            # Envoy never saw them: still up, LIVE, listeners not drained, logging unchanged
            await asyncio.sleep(0.5)
            assert proxy.envoy.returncode is None
            status, info = await proxy.envoy.admin_get("/server_info")
            assert status == 200 and json.loads(info)["state"] == "LIVE"
            status, listeners = await proxy.envoy.admin_get("/listeners?format=json")
            assert status == 200 and str(proxy.inbound) in listeners
            status, levels = await proxy.envoy.admin_post("/logging")  # no query: lists, changes nothing
            assert status == 200 and "admin: " in levels, levels[:500]
            assert not [row for row in levels.splitlines() if row.strip().endswith(": trace")]
        finally:
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
            await channel.close()
            await server.stop(0)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/config_dump?resource=dynamic_listeners", 0),
        ("GET", "/clusters?format=json", 0),
        ("GET", "/stats?format=json&filter=^cluster\\.outbound\\|.*upstream_rq_(total|5xx)$", 0),
        ("GET", "/ready", 0),
        ("GET", "/server_info", 0),
        ("POST", "/ready", 405),
        ("GET", "/quitquitquit", 403),
        ("GET", "/drain_listeners?inboundonly", 403),
        ("GET", "/logging?level=debug", 403),
        ("GET", "/config_dump#x", 403),
        ("GET", "//127.0.0.1:1/ready", 403),
    ],
)
def test_only_read_only_gets_pass(method: str, path: str, status: int) -> None:
    assert refusal(method, path)[0] == status
