"""Workload identity through real Envoys (issue #11): every Envoy reaches the control plane only through its
`mecha agent` (credential, key generated locally, SDS + ADS over Unix sockets); mTLS between the proxies
works with those keys, and what an attacker on the same host can send to the xDS port gets nothing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
import yaml
from e2e_mesh import Mesh, demo_mesh

from xds import types
from xds.cli.main import main as mecha

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "xds" / "identity"))
from identity_helpers import ads_request, create_certificate

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    env = {"MECHA_MTLS": "1", "MECHA_CERT_TTL": "8"}
    async with demo_mesh(tmp_path_factory.mktemp("agents"), False, env, with_agents=True) as mesh:
        yield mesh


async def test_mtls_between_agent_backed_proxies_carries_the_credential_identity(
    agent_mesh: Mesh, tmp_path: Path
) -> None:
    (tmp_path / "strict.yaml").write_text(STRICT)
    rc, out = await agent_mesh.cli("apply", "-f", str(tmp_path / "strict.yaml"))
    assert rc == 0, out
    status, body = await agent_mesh.call("reviews", "/reviews")
    assert status == 200, body
    headers = {k.lower(): v for k, v in body["headers"].items()}
    assert "URI=spiffe://cluster.local/ns/default/sa/productpage" in headers.get(
        "x-forwarded-client-cert", ""
    )
    counts = await agent_mesh.versions(10, end_user="jason")  # productpage -> reviews v2 -> ratings
    assert counts == {"v2": 10}


async def test_bootstraps_hold_no_credential_and_a_copied_node_block_gets_nothing(agent_mesh: Mesh) -> None:
    state = agent_mesh.stack.o.state_dir
    bootstrap = (state / "bootstrap" / "reviews-v1.agent.yaml").read_text()
    assert "xds.sock" in bootstrap and "Bearer" not in bootstrap and "PRIVATE KEY" not in bootstrap
    node = yaml.safe_load(bootstrap)["node"]
    root = state / "ca" / "root-cert.pem"
    port = agent_mesh.stack.o.xds_port
    for type_url, names in ((types.SECRET, ["default"]), (types.CLUSTER, [])):
        out = await ads_request(
            port, root, node["id"], node["metadata"]["mecha"], type_url=type_url, names=names
        )
        assert out.responses == [] and out.code is grpc.StatusCode.UNAUTHENTICATED, out
    plain = await ads_request(port, None, node["id"], node["metadata"]["mecha"], names=["default"])
    assert plain.responses == [] and plain.code is grpc.StatusCode.UNAVAILABLE
    credential = state / "agents" / "reviews-v1" / "credential.jwt"
    assert (
        credential.stat().st_mode & 0o077 == 0
        and (state / "agents" / "reviews-v1").stat().st_mode & 0o077 == 0
    )


async def _serials(admin: str, session: aiohttp.ClientSession) -> set[str]:
    """Serial numbers of the workload certificates an Envoy holds now (admin /certs)."""
    async with session.get(f"{admin}/certs") as resp:
        body = await resp.json(content_type=None)
    return {c["serial_number"] for entry in body.get("certificates", []) for c in entry.get("cert_chain", [])}


async def test_rotation_under_200_requests_per_second_fails_no_request(
    agent_mesh: Mesh, tmp_path: Path
) -> None:
    """MECHA_CERT_TTL=8: each agent rotates every 4 s. 200 req/s for 14 s from productpage's Envoy to
    reviews' over mTLS STRICT: every certificate change lands while requests are in flight."""
    (tmp_path / "strict.yaml").write_text(STRICT)
    rc, out = await agent_mesh.cli("apply", "-f", str(tmp_path / "strict.yaml"))
    assert rc == 0, out
    admins = {p: f"http://127.0.0.1:{agent_mesh.layout.proxy_of(p).admin_port}" for p in ("reviews-v1",)}
    admins["productpage-v1"] = f"http://127.0.0.1:{agent_mesh.layout.proxy_of('productpage-v1').admin_port}"
    seen: dict[str, set[str]] = {p: set() for p in admins}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    rate, seconds = 200, 14

    async def one() -> None:
        try:
            status, body = await agent_mesh.call("reviews", "/reviews")
        except (aiohttp.ClientError, TimeoutError) as exc:
            failures.append(repr(exc))
            return
        statuses[status] += 1
        if status != 200:
            failures.append(f"HTTP {status}: {str(body)[:200]}")

    async def watch_certificates(session: aiohttp.ClientSession, until: float) -> None:
        while time.monotonic() < until:
            for proxy, admin in admins.items():
                seen[proxy] |= await _serials(admin, session)
            await asyncio.sleep(0.25)

    start = time.monotonic()
    async with aiohttp.ClientSession() as session:
        watcher = asyncio.create_task(watch_certificates(session, start + seconds))
        tasks = []
        for i in range(rate * seconds):  # paced: request i leaves at start + i / rate
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        await watcher
    took = time.monotonic() - start
    assert failures == [], f"{len(failures)} failed ({rate * seconds / took:.0f} req/s): {failures[:5]}"
    assert statuses[200] == rate * seconds
    assert took < seconds * 1.5, f"the load ran at {rate * seconds / took:.0f} req/s, not {rate}"
    for proxy, serials in seen.items():
        assert len(serials) >= 3, f"{proxy} held only {len(serials)} certificates in {seconds}s"
        # at half the lifetime, not on arrival: a CSR storm (each answer pushed over SDS) made the 504s
        assert len(serials) <= 6, f"{proxy} held {len(serials)} certificates in {seconds}s (rotation ~4 s)"


async def test_cli_revoke_closes_the_stream_within_5s_and_refuses_the_next_csr(
    agent_mesh: Mesh, tmp_path: Path
) -> None:
    state = agent_mesh.stack.o.state_dir
    port, root = agent_mesh.stack.o.xds_port, state / "ca" / "root-cert.pem"
    credential = tmp_path / "intruder.jwt"
    out = io.StringIO()
    argv = ["credential", "issue", "--proxy-id", "details-v1", "--service-account", "details",
            "--label", "app=details", "--state-dir", str(state), "-o", str(credential)]  # fmt: skip
    with contextlib.redirect_stdout(out):
        assert await asyncio.to_thread(mecha, argv) == 0
    issued = json.loads(out.getvalue())
    assert credential.stat().st_mode & 0o777 == 0o600
    token = credential.read_text().strip()
    meta = {"mode": "sidecar", "namespace": "default", "labels": {"app": "details"}}
    stream = asyncio.create_task(
        ads_request(port, root, "details-v1", meta, token, types.CLUSTER, within_s=30)
    )
    for _ in range(100):
        if any(r.get("proxy_id") == "details-v1" for r in await agent_mesh.stack.proxies()):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the credential's stream never opened")
    revoked_at = time.monotonic()
    rc, said = await agent_mesh.cli("credential", "revoke", issued["jti"])
    assert rc == 0 and "1 open streams closed" in said, said
    ended = await asyncio.wait_for(stream, 5.0)
    assert time.monotonic() - revoked_at < 5.0
    assert ended.code is grpc.StatusCode.UNAUTHENTICATED and "revoked" in ended.details, ended
    _, code, details = await create_certificate(port, root, token, token)
    assert code is grpc.StatusCode.UNAUTHENTICATED and "revoked" in details
    # the mesh's own proxies are untouched
    status, _ = await agent_mesh.call("reviews", "/reviews")
    assert status == 200
