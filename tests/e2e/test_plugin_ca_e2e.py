"""Istio's plug-in CA through real Envoys (issue #14 item 1): Mecha signs as an intermediate under the
organisation's root (`cacerts` in MECHA_CA_DIR), agent-backed Envoys talk mTLS STRICT with those chains, and a
root rotation (bundle of old + new roots, then the new intermediate) fails no request while certificates under
both roots are in use, without a restart."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from e2e_mesh import Mesh, demo_mesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "xds" / "ca"))
from pki import Ca, make_ca, write_cacerts

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""
PROXIES = ("productpage-v1", "reviews-v1")


class Pki:
    def __init__(self) -> None:
        self.old_root = make_ca("org root 2024", rsa_key=True)
        self.old = make_ca("mecha 2024", self.old_root)
        self.new_root = make_ca("org root 2025")
        self.new = make_ca("mecha 2025", self.new_root)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plugin_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Mesh, Pki]]:
    pki = Pki()
    state = tmp_path_factory.mktemp("plugin-ca")
    write_cacerts(state / "ca", pki.old)
    previous = os.environ.get("MECHA_CA_RELOAD_S")
    os.environ["MECHA_CA_RELOAD_S"] = "0.5"  # control plane and agents poll the files twice a second
    env = {"MECHA_MTLS": "1", "MECHA_CERT_TTL": "10"}
    try:
        async with demo_mesh(state, False, env, with_agents=True) as mesh:
            yield mesh, pki
    finally:
        if previous is None:
            os.environ.pop("MECHA_CA_RELOAD_S", None)
        else:
            os.environ["MECHA_CA_RELOAD_S"] = previous


async def certs_of(mesh: Mesh, proxy: str, session: aiohttp.ClientSession) -> dict[str, Any]:
    """Envoy's admin /certs: the ROOTCA roots' serials and the serials of the workload chain."""
    admin = f"http://127.0.0.1:{mesh.layout.proxy_of(proxy).admin_port}"
    async with session.get(f"{admin}/certs") as resp:
        body = await resp.json(content_type=None)
    roots: set[int] = set()
    chain: set[str] = set()
    for entry in body.get("certificates", []):
        roots |= {int(c["serial_number"], 16) for c in entry.get("ca_cert", [])}  # hex, maybe zero-padded
        chain |= {c["serial_number"] for c in entry.get("cert_chain", [])}
    return {"roots": roots, "chain": chain}


def serial(ca: Ca) -> int:
    return int(ca.cert.serial_number)


async def test_strict_mtls_with_chains_under_the_organisations_root(plugin_mesh: tuple[Mesh, Pki]) -> None:
    mesh, pki = plugin_mesh
    path = mesh.stack.o.state_dir / "strict.yaml"
    path.write_text(STRICT)
    rc, out = await mesh.cli("apply", "-f", str(path))
    assert rc == 0, out
    status, body = await mesh.call("reviews", "/reviews")
    assert status == 200, body
    xfcc = {k.lower(): v for k, v in body["headers"].items()}.get("x-forwarded-client-cert", "")
    assert "URI=spiffe://cluster.local/ns/default/sa/productpage" in xfcc
    async with aiohttp.ClientSession() as session:
        for proxy in PROXIES:
            held = await certs_of(mesh, proxy, session)
            assert held["roots"] == {serial(pki.old_root)}, (proxy, held)  # ROOTCA: the org root, not Mecha's
            assert len(held["chain"]) == 1, (proxy, held)
    # reviews trusts only the org root: productpage's leaf verified only because its chain carried the
    # intermediate (Envoy's /certs lists the leaf alone)


async def test_root_rotation_fails_no_request_while_both_roots_sign(plugin_mesh: tuple[Mesh, Pki]) -> None:
    """Istio's order: root-cert.pem gets both roots (every ROOTCA follows), then the new intermediate signs;
    each agent rotates at its own time, so old-root and new-root certificates meet under STRICT."""
    mesh, pki = plugin_mesh
    folder = mesh.stack.o.state_dir / "ca"
    failures: list[str] = []
    ok = 0
    stop = asyncio.Event()

    async def traffic() -> None:
        nonlocal ok
        while not stop.is_set():
            try:
                status, body = await mesh.call("reviews", "/reviews")
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(repr(exc))
            else:
                if status == 200:
                    ok += 1
                else:
                    failures.append(f"HTTP {status}: {str(body)[:200]}")
            await asyncio.sleep(0.02)

    async def until(session: aiohttp.ClientSession, check: Any, within_s: float, what: str) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            held = {p: await certs_of(mesh, p, session) for p in PROXIES}
            if check(held):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what} within {within_s}s: {held}")

    both_roots = {serial(pki.old_root), serial(pki.new_root)}
    mixed_seen = False
    loads = [asyncio.create_task(traffic()) for _ in range(4)]
    try:
        async with aiohttp.ClientSession() as session:
            (folder / "root-cert.pem").write_bytes(pki.new_root.pem + pki.old_root.pem)
            await until(session, lambda h: all(v["roots"] == both_roots for v in h.values()), 10,
                        "every ROOTCA holds both roots")  # fmt: skip
            first_seen: dict[str, float] = {}  # leaf serial -> when first held
            for held in [await certs_of(mesh, p, session) for p in PROXIES]:
                first_seen |= dict.fromkeys(held["chain"], 0.0)
            write_cacerts(folder, pki.new, roots=[pki.new_root, pki.old_root])
            switched = time.monotonic()
            deadline = switched + 30
            while time.monotonic() < deadline:
                held = {p: await certs_of(mesh, p, session) for p in PROXIES}
                # issued before the switch: old root; first held a reload interval (0.5 s) and more after
                # it: new root (Envoy's /certs shows the leaf only, not the intermediate)
                under_old, under_new = set(), set()
                for proxy, v in held.items():
                    for leaf in v["chain"]:
                        seen = first_seen.setdefault(leaf, time.monotonic())
                        if seen < switched:
                            under_old.add(proxy)
                        elif seen > switched + 1.0:
                            under_new.add(proxy)
                mixed_seen |= bool(under_old and under_new and under_old != under_new)
                if under_new == set(PROXIES) and not under_old:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"not every Envoy holds a new-root certificate: {held}")
            await asyncio.sleep(2)  # traffic with both under the new root
    finally:
        stop.set()
        await asyncio.gather(*loads)
    assert failures == [], f"{len(failures)} failed, {ok} ok: {failures[:5]}"
    assert ok > 100
    # agents started together rotate in phase, so the window where the two Envoys hold leaves under
    # different roots is short and not always sampled: it is logged, not asserted (see docs/security.md)
    print(f"mixed old-root/new-root certificates observed: {mixed_seen}")
