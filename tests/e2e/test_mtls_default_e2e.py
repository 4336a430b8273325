"""mTLS on by default (issue #14 item 1) through real Envoys.

A mesh started with no MECHA_MTLS at all (as `mecha up` is): every sidecar and the ingress gateway hold a
SPIFFE certificate from their agent, sidecars talk mTLS to each other (auto-mTLS, PERMISSIVE), a plaintext
client outside the mesh still reaches a sidecar's inbound port, and Bookinfo's ISTIO_MUTUAL DestinationRule
is harmless, as in Istio. A mesh with MECHA_MTLS=0 refuses that DestinationRule and a STRICT
PeerAuthentication at apply time (they would answer 503), and keeps serving plaintext."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from e2e_mesh import Mesh, demo_mesh

from xds.demo.config import make_layout
from xds.runner.stack import Stack, StackOptions
from xds.testing.envoy import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

# samples/bookinfo/networking/destination-rule-all-mtls.yaml (ratings and productpage; the demo folder owns
# the reviews rule)
BOOKINFO_MTLS_DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage}
spec:
  host: productpage
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: v1}}
"""
STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def default_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """Control plane, apps, a sidecar each and the ingress gateway, as `mecha up` starts them: nothing set."""
    saved = {k: os.environ.pop(k) for k in ("MECHA_MTLS", "MECHA_INSECURE_XDS") if k in os.environ}
    layout = make_layout("sidecar", lambda _role="", _index=0: free_port())
    options = StackOptions(
        layout=layout,
        state_dir=tmp_path_factory.mktemp("default-mesh"),
        api_port=free_port(),
        xds_port=free_port(),
        watch_interval=0.2,
        with_capabilities=False,
        with_gateway=True,
    )
    stack = Stack(options)
    try:
        await stack.start(60)
        mesh = Mesh(stack, layout, False)
        try:
            yield mesh
        finally:
            await mesh.close()
    finally:
        await stack.stop()
        os.environ.update(saved)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plain_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    async with demo_mesh(tmp_path_factory.mktemp("no-ca-mesh"), False, {"MECHA_MTLS": "0"}) as mesh:
        yield mesh


async def eventually(check: Callable[[], Awaitable[Any]], within_s: float = 10.0) -> Any:
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met in {within_s}s; last result {last!r}")


async def spiffe_ids(mesh: Mesh, admin_port: int) -> list[str]:
    """The URI SANs of the certificates an Envoy holds (its admin /certs)."""
    async with mesh.session.get(f"http://127.0.0.1:{admin_port}/certs") as resp:
        data = await resp.json(content_type=None)
    return sorted(
        {
            san["uri"]
            for entry in data.get("certificates", [])
            for cert in entry.get("cert_chain", [])
            for san in cert.get("subject_alt_names", [])
            if san.get("uri", "").startswith("spiffe://")
        }
    )


def xfcc_of(body: dict[str, Any]) -> str:
    return str({k.lower(): v for k, v in body["headers"].items()}.get("x-forwarded-client-cert", ""))


async def apply(mesh: Mesh, tmp: Path, text: str) -> tuple[int, str]:
    path = tmp / "change.yaml"
    path.write_text(text)
    return await mesh.cli("apply", "-f", str(path))


# ---- the default: a CA -----------------------------------------------------------------------------------


async def test_every_sidecar_and_the_gateway_hold_a_spiffe_certificate(default_mesh: Mesh) -> None:
    held = {p.id: await spiffe_ids(default_mesh, p.admin_port) for p in default_mesh.layout.proxies}
    for proxy_id, ids in held.items():
        assert ids, proxy_id
        assert all(i.startswith("spiffe://cluster.local/ns/default/sa/") for i in ids), (proxy_id, ids)
    gateway = default_mesh.layout.gateway
    assert gateway is not None
    assert await eventually(lambda: spiffe_ids(default_mesh, gateway.admin_port))


async def test_sidecars_talk_mtls_without_any_config(default_mesh: Mesh) -> None:
    status, body = await default_mesh.call("reviews", "/reviews")
    assert status == 200, body
    assert "URI=spiffe://cluster.local/ns/default/sa/productpage" in xfcc_of(body), body["headers"]


async def test_a_plaintext_client_outside_the_mesh_reaches_a_sidecar(default_mesh: Mesh) -> None:
    """PERMISSIVE by default: curl to the inbound port works, and the app sees no peer identity."""
    reviews = default_mesh.layout.workload("reviews-v1")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as plain:
        async with plain.get(f"http://127.0.0.1:{reviews.inbound_port}/reviews") as resp:
            assert resp.status == 200
            body = await resp.json(content_type=None)
    assert body["version"] == "v1" and xfcc_of(body) == ""


async def test_the_gateway_reaches_the_mesh_over_mtls(default_mesh: Mesh) -> None:
    gateway = default_mesh.layout.gateway
    assert gateway is not None
    async with default_mesh.session.get(f"{gateway.url}/productpage") as resp:
        assert resp.status == 200
        body = await resp.json(content_type=None)
    assert body["app"] == "productpage" and body["reviews"]["status"] == 200
    # the gateway's cluster towards productpage completed TLS handshakes (auto-mTLS from the gateway too)
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    async with default_mesh.session.get(f"{admin}/stats?filter=ssl.handshake") as r:
        stats = dict(line.split(": ", 1) for line in (await r.text()).splitlines() if ": " in line)
    handshakes = {k: int(v) for k, v in stats.items() if "productpage" in k and k.startswith("cluster.")}
    assert handshakes and max(handshakes.values()) > 0, stats


async def test_bookinfo_istio_mutual_is_harmless_with_the_ca(default_mesh: Mesh, tmp_path: Path) -> None:
    rc, out = await apply(default_mesh, tmp_path, BOOKINFO_MTLS_DR)
    assert rc == 0, out
    try:
        await eventually(lambda: _all_synced(default_mesh))
        assert await default_mesh.versions(10, end_user="jason") == {"v2": 10}  # reviews v2 -> ratings
        status, _ = await default_mesh.call("productpage", "/productpage")
        assert status == 200
    finally:
        await apply_delete(default_mesh, tmp_path, BOOKINFO_MTLS_DR)


async def _all_synced(mesh: Mesh) -> bool:
    rc, _ = await mesh.cli("proxy-status")
    return rc == 0


async def apply_delete(mesh: Mesh, tmp: Path, text: str) -> None:
    path = tmp / "undo.yaml"
    path.write_text(text)
    rc, out = await mesh.cli("delete", "-f", str(path))
    assert rc == 0, out


# ---- MECHA_MTLS=0: no CA -----------------------------------------------------------------------------------


async def test_no_ca_refuses_bookinfo_istio_mutual_at_apply_time(plain_mesh: Mesh, tmp_path: Path) -> None:
    """Before: accepted, CDS STALE ~15 s, then every request to reviews answered 503."""
    rc, out = await apply(plain_mesh, tmp_path, BOOKINFO_MTLS_DR)
    assert rc != 0, out
    assert "spec.trafficPolicy.tls.mode" in out and "without a CA" in out, out
    assert await _all_synced(plain_mesh)
    assert await plain_mesh.versions(10, end_user="jason") == {"v2": 10}  # reviews v2 -> ratings


async def test_no_ca_refuses_strict_and_plaintext_keeps_flowing(plain_mesh: Mesh, tmp_path: Path) -> None:
    """Before: accepted, SYNCED, and then every caller got 503 (the inbound port fails closed)."""
    rc, out = await apply(plain_mesh, tmp_path, STRICT)
    assert rc != 0 and "spec.mtls.mode" in out, out
    reviews = plain_mesh.layout.workload("reviews-v1")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as plain:
        async with plain.get(f"http://127.0.0.1:{reviews.inbound_port}/reviews") as resp:
            assert resp.status == 200
    status, body = await plain_mesh.call("reviews", "/reviews")
    assert status == 200 and xfcc_of(body) == "", body


async def test_no_ca_mesh_holds_no_certificate(plain_mesh: Mesh) -> None:
    for proxy in plain_mesh.layout.proxies:
        assert await spiffe_ids(plain_mesh, proxy.admin_port) == [], proxy.id
