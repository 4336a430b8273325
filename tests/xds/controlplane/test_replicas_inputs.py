"""Inputs resolved once and stored with the version (issue #13): two replicas on the real PostgreSQL serve
byte-identical snapshots although the JWKS endpoint answers each request with a new key; the leader alone
refreshes it; rollback restores the earlier JWKS; a Gateway credential's key never reaches the store."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from pg_store import PG_BASE, private_schema, store_url

from xds.ca import CertificateAuthority
from xds.controlplane.inputs import SOURCE_JWKS_REFRESH
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.controlplane.store import InputRefresh
from xds.demo.config import demo_config, make_layout
from xds.proxy import ProxyIdentity

_ports = itertools.count(33000)
LAYOUT = make_layout("sidecar", lambda _r, _i: next(_ports))
REVIEWS = next(
    ProxyIdentity.from_node(p.id, {"mecha": p.metadata()}) for p in LAYOUT.proxies if p.id == "reviews-v1"
)


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with private_schema() as name:
        yield name


@pytest.fixture
def rotating_jwks() -> Iterator[dict[str, Any]]:
    """A real HTTP server whose JWKS has a new key id on every request (a key rotation per request)."""
    loop = asyncio.new_event_loop()
    state: dict[str, Any] = {"requests": 0}
    started = threading.Event()

    async def jwks(_request: web.Request) -> web.Response:
        state["requests"] += 1
        key = {"kty": "RSA", "kid": f"k{state['requests']}", "n": "AQAB", "e": "AQAB"}
        return web.Response(text=json.dumps({"keys": [key]}), content_type="application/json")

    async def start() -> None:
        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["runner"] = runner
        state["uri"] = f"http://127.0.0.1:{runner.addresses[0][1]}/jwks.json"
        started.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True
    )
    thread.start()
    assert started.wait(10)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def authn(uri: str) -> str:
    return (
        "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: ra, namespace: default}\n"
        "spec: {selector: {matchLabels: {app: reviews}}, "
        f"jwtRules: [{{issuer: iss, jwksUri: '{uri}'}}]}}\n"
    )


@asynccontextmanager
async def replica(url: str, state: Path, **extra: Any) -> AsyncIterator[ControlPlane]:
    settings = Settings(xds_port=0, watch=False, state_dir=state, store=url, replica_poll=0.5, **extra)
    settings.insecure_xds = True
    cp = ControlPlane(settings)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


async def until(condition: Any, within: float) -> None:
    """Poll a condition of a running replica (its jobs tick on their own task) for at most `within` s."""
    for _ in range(int(within / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    assert condition()


async def reaches(cp: ControlPlane, version: int) -> None:
    async with asyncio.timeout(10):
        while cp.store.version < version:
            await cp.wait_for_version_change(cp.store.version, 1.0)
    assert cp.store.version == version


def served(cp: ControlPlane) -> dict[str, dict[str, bytes]]:
    """What this replica sends the reviews proxy: every resource's bytes, by type and name."""
    snap = cp.builder.build(cp.store.config, [REVIEWS], config_version=str(cp.store.version))[REVIEWS.id]
    return {t: {n: bytes(r.body) for n, r in by_name.items()} for t, by_name in snap.resources.items()}


def inlined_kids(cp: ControlPlane) -> set[str]:
    found = b"".join(b for by_name in served(cp).values() for b in by_name.values())
    return {k for k in (f"k{i}" for i in range(1, 20)) if f'"kid": "{k}"'.encode() in found}


async def test_replicas_serve_the_stored_jwks_and_rollback_restores_it(
    schema: str, tmp_path: Path, rotating_jwks: dict[str, Any]
) -> None:
    url = store_url(schema)
    config = demo_config(LAYOUT) + authn(rotating_jwks["uri"])
    async with replica(url, tmp_path / "a") as a, replica(url, tmp_path / "b") as b:
        outcome = await a.apply([("mesh.yaml", config)])
        assert outcome["accepted"], outcome["diagnostics"]
        await reaches(b, 1)
        assert served(a) == served(b)  # byte-identical, though the endpoint would answer b with k2
        assert inlined_kids(a) == {"k1"} and rotating_jwks["requests"] == 1

        refreshed = await a.refresh_inputs(InputRefresh(jwks=True), SOURCE_JWKS_REFRESH)
        assert refreshed["accepted"] and refreshed["changes"]["inputs"] == [f"jwks {rotating_jwks['uri']}"]
        await reaches(b, 2)
        assert inlined_kids(b) == {"k2"} and served(a) == served(b)
        history = await b.history_view()
        assert history["versions"][0]["source"] == "inputs:jwks-refresh"

        back = await b.rollback(1)
        assert back["accepted"] and back["version"] == 3
        await reaches(a, 3)
        assert inlined_kids(a) == {"k1"} and served(a) == served(b)  # the earlier JWKS came back
        assert rotating_jwks["requests"] == 2  # neither the catch-ups nor the rollback fetched


async def test_only_the_leader_refreshes_and_a_lost_session_moves_the_job(
    schema: str, tmp_path: Path, rotating_jwks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", "500ms")
    url = store_url(schema)
    async with replica(url, tmp_path / "a") as a, replica(url, tmp_path / "b") as b:
        assert (await a.apply([("mesh.yaml", demo_config(LAYOUT) + authn(rotating_jwks["uri"]))]))["accepted"]
        await until(lambda: a.jobs.leader != b.jobs.leader, 10)
        leader, other = (a, b) if a.jobs.leader else (b, a)
        job = {cp: next(j for j in cp.jobs.jobs if j.name == "jwks-refresh") for cp in (a, b)}
        await until(lambda: job[leader].runs >= 3, 10)
        assert job[other].runs == 0  # never ran where it is not the leader
        sources = [v["source"] for v in (await a.history_view())["versions"]]
        assert "inputs:jwks-refresh" in sources

        # the leader freezes and its database session ends: the other takes the jobs within one lease
        assert leader.jobs._task is not None
        leader.jobs._task.cancel()
        election: Any = leader.jobs.election
        pid = election._conn.get_server_pid()
        conn = await asyncpg.connect(PG_BASE)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        await until(lambda: job[other].runs > 0, 5)
        assert other.jobs.leader


async def test_gateway_credential_key_stays_a_file_and_a_changed_key_is_not_served(
    schema: str, tmp_path: Path
) -> None:
    creds = tmp_path / "credentials"
    (creds / "shop").mkdir(parents=True)
    ca = CertificateAuthority()
    cert, key = ca.serving_certificate(["shop.example"], [], ttl=timedelta(days=1))
    (creds / "shop" / "tls.crt").write_bytes(cert)
    (creds / "shop" / "tls.key").write_bytes(key)
    gateway = (
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: default}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, "
        "protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE, credentialName: shop}\n"
    )
    url = store_url(schema)
    async with replica(url, tmp_path / "a", credentials_dir=creds) as a:
        assert (await a.apply([("gw.yaml", gateway)]))["accepted"]
        stored = a.store.inputs.credential("shop")
        assert stored is not None and stored.cert == cert.decode()
        assert set(a.builder.credentials.load({"shop"}, a.store.inputs)) == {"shop"}
        # another key file under the same name (a replica mounting other files): not served with this cert
        (creds / "shop" / "tls.key").write_bytes(ca.serving_certificate(["x"], [], timedelta(days=1))[1])
        assert a.builder.credentials.load({"shop"}, a.store.inputs) == {}
        assert "SHA-256 differs" in a.builder.credentials.describe("shop")
    conn = await asyncpg.connect(PG_BASE)
    try:
        body = await conn.fetchval(f'SELECT body FROM "{schema}".resolved_inputs')
    finally:
        await conn.close()
    assert "BEGIN CERTIFICATE" in body and "PRIVATE KEY" not in body  # the key: its hash only
