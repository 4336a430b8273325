"""Traffic through real Envoys configured by the real control plane, in SotW and delta xDS.

Routing under test is the demo's (xds/demo/config.py): reviews v1 80% / v2 20%, `end-user: jason` -> v2,
2 retries on 5xx, 1 s route timeout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from e2e_mesh import Mesh

from xds.runner.stack import proxy_synced

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SPLIT_REQUESTS = 400
SPLIT_TOLERANCE = 0.08  # 80% +- 8 points over 400 requests: ~4.5 standard deviations


async def test_every_proxy_is_synced(mesh: Mesh) -> None:
    rows = (await mesh.api_get("/api/v1/proxies"))["proxies"]
    assert {r["proxy_id"] for r in rows} == {p.id for p in mesh.layout.proxies}
    assert all(proxy_synced(r) for r in rows), rows


async def test_productpage_reaches_reviews_through_both_proxies(mesh: Mesh) -> None:
    pp = mesh.layout.workload("productpage-v1")
    async with mesh.session.get(f"http://127.0.0.1:{pp.inbound_port}/productpage") as resp:
        body = await resp.json()
    assert resp.status == 200 and body["app"] == "productpage"
    assert body["reviews"]["status"] == 200 and body["reviews"]["body"]["app"] == "reviews"
    assert body["reviews"]["body"]["path"] == "/reviews"


async def test_weighted_split_within_tolerance(mesh: Mesh) -> None:
    counts = await mesh.versions(SPLIT_REQUESTS)
    assert set(counts) <= {"v1", "v2"}, counts
    share_v1 = counts["v1"] / SPLIT_REQUESTS
    assert abs(share_v1 - 0.80) <= SPLIT_TOLERANCE, counts


async def test_header_match_routes_to_v2(mesh: Mesh) -> None:
    counts = await mesh.versions(40, end_user="jason")
    assert counts == {"v2": 40}


async def test_failing_backend_is_retried(mesh: Mesh) -> None:
    key = uuid.uuid4().hex
    status, body = await mesh.call("reviews", f"/fail?n=1&key={key}", end_user="jason")
    assert status == 200 and body["attempt"] == 2  # first attempt got 503, Envoy retried
    # the upstream itself confirms it saw exactly two attempts
    status, seen = await mesh.call("reviews", f"/attempts?key={key}", end_user="jason")
    assert seen["attempts"] == 2


async def test_slow_backend_gets_504_at_route_timeout(mesh: Mesh) -> None:
    started = time.monotonic()
    status, body = await mesh.call("reviews", "/slow?ms=3000", end_user="jason")
    assert status == 504, body
    assert "upstream request timeout" in str(body)
    assert time.monotonic() - started < 2.5  # cut at the 1 s timeout, not after the 3 s answer


async def test_invalid_config_is_refused_and_routing_keeps_working(mesh: Mesh, tmp_path: Path) -> None:
    bad = tmp_path / "bad-subset.yaml"
    # another name: the folder owns VirtualService reviews (an API write to it is an owner conflict)
    bad.write_text(
        _reviews_vs(route="- destination: {host: reviews, subset: v9}").replace(
            "{name: reviews,", "{name: extra,"
        )
    )
    rc, out = await mesh.cli("apply", "-f", str(bad), "--strict")  # istiod accepts it; strict mode refuses
    assert rc == 1, out
    assert str(bad) in out and "subset" in out and "v9" in out
    assert "refused" in out
    assert await mesh.versions(20, end_user="jason") == {"v2": 20}


async def test_nacked_config_keeps_traffic_and_shows_in_proxy_status(mesh: Mesh, tmp_path: Path) -> None:
    """A real Envoy NACK: a request header value with a line feed. istiod accepts it (its validation checks
    only %-formatting in header values) and so does Mecha, but Envoy's HeaderValue rule (HTTP_HEADER_VALUE)
    refuses the whole route configuration. The document is a ratings VirtualService the API may own (the
    watched folder owns VirtualService reviews)."""
    nack = tmp_path / "nack.yaml"
    nack.write_text(_ratings_vs(extra='headers: {request: {set: {x-nack: "line\\nfeed"}}}'))
    rc, out = await mesh.cli("apply", "-f", str(nack))
    assert rc == 0, out
    try:
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            rc, text = await mesh.cli("proxy-status")
            if "NACKED" in text:
                break
            await asyncio.sleep(0.2)
        assert "NACKED" in text, text
        assert "NACK:" in text and "productpage-v1" in text  # the message is shown under the table
        # Envoy keeps the last accepted routes: the demo routing still answers.
        assert await mesh.versions(20, end_user="jason") == {"v2": 20}
    finally:
        # Remove the NACKed document: the proxies recover.
        rc, out = await mesh.cli("delete", "-f", str(nack))
        assert rc == 0, out
    # not stack.wait_synced: it gives up at the first NACK it sees, and the old NACK shows until the next ACK
    deadline = time.monotonic() + 10
    rows = await mesh.stack.proxies()
    while time.monotonic() < deadline:
        rows = await mesh.stack.proxies()
        if all(proxy_synced(r) for r in rows):
            break
        await asyncio.sleep(0.2)
    assert all(proxy_synced(r) for r in rows), rows


async def test_dry_run_shows_envoy_changes_without_applying(mesh: Mesh, tmp_path: Path) -> None:
    # a ratings VirtualService (the API may own it; the folder owns reviews) changes every proxy's routes
    change = tmp_path / "ratings-timeout.yaml"
    change.write_text(_ratings_vs(extra="timeout: 3s"))
    before = (await mesh.api_get("/api/v1/config"))["version"]
    rc, out = await mesh.cli("diff", "-f", str(change))
    assert rc == 0, out
    assert "would apply" in out and "proxy productpage-v1:" in out and "RDS" in out and "modified" in out
    assert (await mesh.api_get("/api/v1/config"))["version"] == before


async def test_proxy_config_reads_envoy_admin(mesh: Mesh) -> None:
    rc, out = await mesh.cli("proxy-config", "productpage-v1", "clusters")
    assert rc == 0 and "reviews" in out, out
    rc, out = await mesh.cli("proxy-config", "productpage-v1", "endpoints")
    port = mesh.layout.workload("reviews-v2").inbound_port
    assert rc == 0 and f"127.0.0.1:{port}" in out, out


async def test_watched_folder_picks_up_add_and_remove(mesh: Mesh) -> None:
    extra = mesh.stack.config_dir / "details.yaml"
    ratings_inbound = mesh.layout.workload("ratings-v1").inbound_port
    extra.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {{name: details, namespace: default}}
            spec:
              hosts: [details]
              location: MESH_INTERNAL
              resolution: STATIC
              ports: [{{number: 9080, name: http, protocol: HTTP}}]
              endpoints: [{{address: 127.0.0.1, ports: {{http: {ratings_inbound}}}}}]
            """
        )
    )
    try:
        assert await _eventually(mesh, "details", lambda s, b: s == 200 and b.get("app") == "ratings")
        broken = mesh.stack.config_dir / "broken.yaml"
        broken.write_text(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings}\n"
            "spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}, weight: 60}, "
            "{destination: {host: ratings}, weight: 30}]}]}\n"  # weights must sum to 100
        )
        try:
            source = await _eventually_source_refused(mesh)
            assert any(
                d["file"].endswith("broken.yaml") and d["code"] == "bad-weight" for d in source["diagnostics"]
            ), source
            status, body = await mesh.call("details", "/")
            assert status == 200 and body["app"] == "ratings"  # last good set keeps serving
        finally:
            broken.unlink()
    finally:
        extra.unlink(missing_ok=True)
    assert await _eventually(mesh, "details", lambda s, b: s != 200)


async def test_control_plane_restart_loses_no_request(mesh: Mesh) -> None:
    cp = next(c for c in mesh.stack.sup.children if c.kind == "control-plane" and c.exited is None)
    results: list[int] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            status, _ = await mesh.call("reviews", "/reviews")
            results.append(status)
            await asyncio.sleep(0.01)

    load = asyncio.create_task(traffic())
    await asyncio.sleep(0.5)
    assert cp.pid is not None
    os.kill(cp.pid, signal.SIGKILL)
    assert cp.proc is not None
    await cp.proc.wait()
    await asyncio.sleep(1.0)  # proxies run on their last config with no control plane
    await mesh.stack.start_control_plane_again()
    await mesh.stack.wait_synced()
    await asyncio.sleep(0.5)
    stop.set()
    await load
    assert len(results) > 20
    assert set(results) == {200}, f"{len(results) - results.count(200)} failed of {len(results)}"


# ---- helpers -------------------------------------------------------------------------------------------
def _reviews_vs(route: str, match: str = "") -> str:
    match_block = f"    match:\n{textwrap.indent(match, '    ')}\n" if match else ""
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n"
        "  - name: extra\n"
        f"{match_block}"
        f"    route:\n{textwrap.indent(route, '    ')}\n"
        "  - name: jason\n"
        "    match:\n    - headers: {end-user: {exact: jason}}\n"
        "    route:\n    - destination: {host: reviews, subset: v2}\n"
        "    retries: {attempts: 2, retryOn: '5xx,connect-failure,refused-stream'}\n    timeout: 1s\n"
    )


def _ratings_vs(extra: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: ratings, namespace: default}\nspec:\n  hosts: [ratings]\n  http:\n"
        f"  - route:\n    - destination: {{host: ratings}}\n    {extra}\n"
    )


async def _eventually(mesh: Mesh, host: str, ok, within: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status, body = await mesh.call(host, "/")
        if ok(status, body if isinstance(body, dict) else {}):
            return True
        await asyncio.sleep(0.2)
    return False


async def _eventually_source_refused(mesh: Mesh, within: float = 10.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sources = (await mesh.api_get("/api/v1/config"))["sources"]
        for status in sources.values():
            if not status["accepted"]:
                return status
        await asyncio.sleep(0.2)
    raise AssertionError("the broken folder edit was never reported as refused")
