"""A cluster's exported config through a real Envoy (issue #14 item 10): `kubectl get ... -o yaml` of bookinfo
(Services, EndpointSlices, Pods; DestinationRule subsets by version; a VirtualService splitting 10/20/70) ->
`mecha import --address-map` (each reviews/ratings Pod IP mapped to a local demo app) -> the reviewed folder
compiled and served over xDS. Requests with `Host: reviews` reach the demo app of each subset's Pod, and
reviews v2 reaches ratings through the same Envoy.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from xds.cache import SnapshotCache
from xds.cli.main import main as mecha
from xds.demo.apps import make_app
from xds.pipeline import SnapshotBuilder, compile_documents, load_paths
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "xds" / "kube"))
from kube_export import RATINGS_POD, REVIEWS_PODS, istio_export, kubernetes_export

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REQUESTS = 300
SHARE_TOLERANCE = 0.1  # 300 requests: v3's 70 % has a standard deviation of ~2.6 points


async def _demo_app(name: str, version: str, proxy: str, runners: list[web.AppRunner]) -> int:
    runner = web.AppRunner(make_app(name, version, proxy))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    runners.append(runner)
    return port


class Client:
    def __init__(self, outbound: int) -> None:
        self.outbound = outbound
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def reviews(self) -> tuple[int, dict[str, object]]:
        url = f"http://127.0.0.1:{self.outbound}/reviews"
        async with self.session.get(url, headers={"Host": "reviews"}) as resp:
            return resp.status, await resp.json(content_type=None) if resp.status == 200 else {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    work = tmp_path_factory.mktemp("kube-import")
    runners: list[web.AppRunner] = []
    outbound = free_port()
    proxy_addr = f"127.0.0.1:{outbound}"
    mapping = [f"{RATINGS_POD[1]}: 127.0.0.1:{await _demo_app('ratings', 'v1', '', runners)}"]
    for _pod, ip, version in REVIEWS_PODS:
        mapping.append(f"{ip}: 127.0.0.1:{await _demo_app('reviews', version, proxy_addr, runners)}")
    (work / "map.yaml").write_text("\n".join(mapping) + "\n")
    (work / "k8s.yaml").write_text(kubernetes_export())
    (work / "istio.yaml").write_text(istio_export())
    folder = work / "imported"
    argv = ["import", "-f", str(work / "k8s.yaml"), "-f", str(work / "istio.yaml"), "-o", str(folder)]
    assert mecha([*argv, "--address-map", str(work / "map.yaml")]) == 0

    docs, load_diags = load_paths([folder])
    result = compile_documents(docs)
    assert not load_diags and result.config is not None, [str(d) for d in result.errors]
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    meta = {"mode": "sidecar", "namespace": "default", "outbound_port": outbound}
    meta["labels"] = {"app": "productpage", "version": "v1"}
    proxy = ProxyIdentity.from_node("productpage-v1", {"mecha": meta})
    cache.set_snapshot(proxy.id, SnapshotBuilder().build(result.config, [proxy])[proxy.id])
    yaml_text, _ = bootstrap_for(proxy.id, xds_port, meta, initial_fetch_timeout_s=0.5)
    envoy = EnvoyProcess(yaml_text, work, name="productpage-v1")
    c = Client(outbound)
    try:
        await envoy.start(timeout=20)
        deadline = time.monotonic() + 15
        while True:
            try:
                if (await c.reviews())[0] == 200:
                    break
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, envoy.log_tail()
            await asyncio.sleep(0.1)
        yield c
    finally:
        await c.session.close()
        await envoy.stop()
        await server.stop(0)
        for runner in runners:
            await runner.cleanup()


async def test_imported_subsets_reach_the_mapped_pods_by_weight(client: Client) -> None:
    answers = await asyncio.gather(*(client.reviews() for _ in range(REQUESTS)))
    assert {status for status, _ in answers} == {200}
    versions = Counter(str(body["version"]) for _, body in answers)
    assert set(versions) == {"v1", "v2", "v3"}
    for version, share in (("v1", 0.1), ("v2", 0.2), ("v3", 0.7)):
        assert abs(versions[version] / REQUESTS - share) < SHARE_TOLERANCE, versions


async def test_reviews_v2_reaches_imported_ratings_through_envoy(client: Client) -> None:
    for _ in range(60):
        status, body = await client.reviews()
        if status == 200 and body.get("version") == "v2":
            ratings = body["ratings"]
            assert isinstance(ratings, dict) and ratings.get("status") == 200, ratings
            assert ratings["body"]["app"] == "ratings", ratings
            return
    pytest.fail("no request reached reviews v2 in 60 tries")
