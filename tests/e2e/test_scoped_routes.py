"""Scoped outbound routing (`mecha serve --route-tables scoped`, SRDS) through real Envoys, SotW and delta.

The demo mesh again, but every sidecar's outbound listener picks a per-service RouteConfiguration from the
request's host, and Dapr invocation re-enters those tables through an internal listener. The routing the
demo ships with must behave exactly as with the single table; a VirtualService edit must leave the Dapr
route table untouched (that is what makes a one-route change small).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from e2e_mesh import Mesh, demo_mesh, demo_yaml_path

from xds.demo.config import RoutingKnobs, demo_documents

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REVIEWS_FQDN = "reviews.default.svc.cluster.local"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(xds_flavour: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    state = tmp_path_factory.mktemp(f"scoped-{xds_flavour}")
    async with demo_mesh(state, xds_flavour == "delta", {"MECHA_ROUTE_TABLES": "scoped"}) as found:
        yield found


async def _dump(mesh: Mesh, proxy_id: str, resource: str) -> list[dict[str, Any]]:
    admin = mesh.layout.proxy_of(proxy_id).admin_port
    url = f"http://127.0.0.1:{admin}/config_dump?resource={resource}"
    async with mesh.session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["configs"])


async def _table_of(mesh: Mesh, host: str) -> str:
    """The route table the scope of `host` points at, as Envoy holds it."""
    groups = await _dump(mesh, "productpage-v1", "dynamic_scoped_route_configs")
    for group in groups:
        for scope in group.get("scoped_route_configs", []):
            if scope["name"] == f"outbound/{host}":
                return str(scope["route_configuration_name"])
    raise AssertionError(f"no scope for {host}")


async def _route_versions(mesh: Mesh, proxy_id: str) -> dict[str, str]:
    rows = await _dump(mesh, proxy_id, "dynamic_route_configs")
    return {r["route_config"]["name"]: r["version_info"] for r in rows}


async def _invoke(mesh: Mesh, path: str, **headers: str) -> tuple[int, Any]:
    port = mesh.layout.proxy_of("productpage-v1").dapr_http_port
    async with mesh.session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
        return resp.status, await resp.json(content_type=None) if resp.status == 200 else await resp.text()


def _write_watched(mesh: Mesh, text: str) -> None:
    """Edit the watched folder's demo.yaml (it owns the demo's documents: an API apply of them is refused),
    written whole and renamed over the old one so the watcher never reads half a file."""
    path = demo_yaml_path(mesh)
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


async def _until(check: Any, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_envoy_routes_outbound_by_scopes(mesh: Mesh) -> None:
    scopes = await _dump(mesh, "productpage-v1", "dynamic_scoped_route_configs")
    assert scopes, "no scoped route configurations in Envoy"
    names = {s["name"] for group in scopes for s in group.get("scoped_route_configs", [])}
    assert {"outbound/reviews", f"outbound/{REVIEWS_FQDN}", "outbound/reviews.default"} <= names, names
    routes = await _route_versions(mesh, "productpage-v1")
    table = await _table_of(mesh, REVIEWS_FQDN)
    assert table.startswith("outbound|default|") and table in routes and "outbound" not in routes, routes


async def test_split_and_header_match_hold(mesh: Mesh) -> None:
    counts = await mesh.versions(300)
    assert set(counts) <= {"v1", "v2"} and abs(counts["v1"] / 300 - 0.8) <= 0.09, counts
    assert await mesh.versions(30, end_user="jason") == Counter({"v2": 30})


@pytest.mark.parametrize("host", ["reviews", "reviews:9080", "reviews.default", REVIEWS_FQDN + ":9080"])
async def test_every_name_of_a_service_finds_its_scope(mesh: Mesh, host: str) -> None:
    status, body = await mesh.call(host, "/reviews", end_user="jason")
    assert status == 200 and body["app"] == "reviews" and body["version"] == "v2", (status, body)


async def test_unknown_host_gets_no_route(mesh: Mesh) -> None:
    status, _ = await mesh.call("nosuch.default.svc.cluster.local", "/")
    assert status == 404


async def test_dapr_invocation_reenters_the_scopes(mesh: Mesh) -> None:
    # the inner route is the whole VirtualService: its header match applies to invocation too
    for _ in range(10):
        status, body = await _invoke(mesh, "/v1.0/invoke/reviews/method/reviews", **{"end-user": "jason"})
        assert status == 200 and body["version"] == "v2" and body["path"] == "/reviews", body
    status, body = await _invoke(mesh, "/reviews", **{"dapr-app-id": "reviews", "end-user": "jason"})
    assert status == 200 and body["version"] == "v2", body


async def test_virtualservice_edit_rewrites_one_table_only(mesh: Mesh) -> None:
    before = await _route_versions(mesh, "productpage-v1")
    original = demo_yaml_path(mesh).read_text()
    v2_only = demo_documents(mesh.layout, RoutingKnobs(v1_weight=0))
    _write_watched(mesh, yaml.safe_dump_all(v2_only, sort_keys=False))
    try:

        async def all_v2() -> bool:
            return await mesh.versions(40) == Counter({"v2": 40})

        await _until(all_v2)
        # invocation follows the new weights without its own table changing
        status, body = await _invoke(mesh, "/v1.0/invoke/reviews/method/reviews")
        assert status == 200 and body["version"] == "v2", body
        after = await _route_versions(mesh, "productpage-v1")
        changed = sorted(n for n in after if after[n] != before.get(n))
        assert changed == [await _table_of(mesh, REVIEWS_FQDN)], changed
    finally:
        _write_watched(mesh, original)

    async def split_back() -> bool:
        return "v1" in await mesh.versions(40)

    await _until(split_back)


async def test_proxy_status_shows_scopes_synced(mesh: Mesh) -> None:
    row = await mesh.status_of("productpage-v1")
    assert row["types"]["SRDS"]["state"] == "SYNCED", row["types"]
    rc, out = await mesh.cli("proxy-status")
    assert rc == 0 and "SRDS" in out.splitlines()[0], out


async def test_a_new_service_gets_its_scope_and_loses_it_on_delete(mesh: Mesh, tmp_path: Path) -> None:
    ratings = mesh.layout.workload("ratings-v1")
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "late", "namespace": "default"},
        "spec": {
            "hosts": ["late.example.internal"],
            "location": "MESH_EXTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "127.0.0.1", "ports": {"http": ratings.inbound_port}}],
        },
    }
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(entry))
    rc, out = await mesh.cli("apply", "-f", str(path))
    assert rc == 0, out

    async def reachable() -> bool:
        status, body = await mesh.call("late.example.internal", "/ratings")
        return status == 200 and body["app"] == "ratings"

    await _until(reachable)
    rc, out = await mesh.cli("delete", "-f", str(path))
    assert rc == 0, out

    async def gone() -> bool:
        status, _ = await mesh.call("late.example.internal", "/ratings")
        return status == 404

    await _until(gone)
