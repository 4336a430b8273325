"""The embedded demo apps on their own (no Envoy): the behaviours the mesh tests rely on."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from xds.demo.apps import make_app
from xds.demo.config import default_layout, demo_documents
from xds.proxy import ProxyIdentity


async def _client(app) -> TestClient:  # type: ignore[no-untyped-def]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_reviews_fail_then_succeed_per_key() -> None:
    client = await _client(make_app("reviews", "v2"))
    try:
        first = await client.get("/fail?n=1&key=k1")
        second = await client.get("/fail?n=1&key=k1")
        other = await client.get("/fail?n=1&key=k2")
        assert (first.status, second.status, other.status) == (503, 200, 503)
        assert (await second.json())["attempt"] == 2
        count = await (await client.get("/attempts?key=k1")).json()
        assert count["attempts"] == 2 and count["version"] == "v2"
        by_header = await client.get("/x", headers={"x-demo-fail": "0", "x-demo-key": "h"})
        assert by_header.status == 200
    finally:
        await client.close()


async def test_productpage_calls_reviews_with_host_and_propagated_headers() -> None:
    fake_proxy = await _client(make_app("reviews", "v1"))  # stands in for the outbound listener
    page = await _client(make_app("productpage", "v1", f"127.0.0.1:{fake_proxy.port}"))
    try:
        resp = await page.get("/productpage", headers={"end-user": "jason", "x-private": "no"})
        body = await resp.json()
        assert resp.status == 200 and body["app"] == "productpage"
        reviews = body["reviews"]
        assert reviews["status"] == 200 and reviews["body"]["version"] == "v1"
        seen = {k.lower(): v for k, v in reviews["body"]["headers"].items()}
        assert seen["host"] == "reviews" and seen["end-user"] == "jason" and "x-private" not in seen
    finally:
        await page.close()
        await fake_proxy.close()


def test_demo_layout_metadata_parses_as_proxy_identity() -> None:
    for mode, proxies in (("sidecar", 4), ("node", 1)):
        layout = default_layout(mode)
        assert len(layout.proxies) == proxies
        for proxy in layout.proxies:
            ident = ProxyIdentity.from_node(proxy.id, {"mecha": proxy.metadata()})
            assert [a.inbound_port for a in ident.apps] == [w.inbound_port for w in proxy.workloads]
        ports = list(layout.ports().values())
        assert len(ports) == len(set(ports)), "a layout must never assign one port twice"


def test_demo_config_endpoints_point_at_proxy_inbound_listeners() -> None:
    # node mode: static WorkloadEntries at the node's inbound listeners
    node = default_layout("node", offset=7)
    entries = {d["metadata"]["name"]: d for d in demo_documents(node) if d["kind"] == "WorkloadEntry"}
    assert entries["reviews-v2"]["spec"]["ports"]["http"] == node.workload("reviews-v2").inbound_port
    # sidecar mode: each sidecar registers itself in its WorkloadGroup (issue #15), no static entry
    layout = default_layout("sidecar", offset=7)
    docs = demo_documents(layout)
    assert not [d for d in docs if d["kind"] == "WorkloadEntry"]
    groups = {d["metadata"]["name"]: d for d in docs if d["kind"] == "WorkloadGroup"}
    assert sorted(groups) == sorted(w.name for w in layout.workloads)
    for proxy in layout.proxies:
        assert proxy.metadata()["workload_group"] in groups
    vs = next(d for d in docs if d["kind"] == "VirtualService" and d["metadata"]["name"] == "reviews")
    split = vs["spec"]["http"][1]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in split] == [("v1", 80), ("v2", 20)]
