"""Outlier detection behaves as in Istio through a real Envoy (issue #14 item 4).

istiod's applyOutlierDetection (pilot/pkg/networking/core/cluster_traffic_policy.go) sets
`healthy_panic_threshold` to minHealthPercent, 0 when unset, and `max_ejection_percent` only when given
(Envoy's default is then 10 %). Three endpoints of one service, two of them answering 503:

- maxEjectionPercent 100, minHealthPercent unset: both are ejected and every request goes to the healthy one
  (Envoy's default 50 % panic threshold sent a share to the ejected hosts), with ROUND_ROBIN and
  LEAST_REQUEST;
- minHealthPercent 50: one healthy host of three is below it, so Envoy routes in panic mode to all three;
- maxEjectionPercent unset: Envoy's 10 % allows no ejection of one host in three (ejections_overflow),
  exactly as an istiod-configured Envoy does.

"First to the last-ejected host, then retried" is Envoy's `common_lb_config.update_merge_window` (1 s
when unset; istiod leaves it unset): an ejection shows at once in the main thread's view (`ejections_active`,
`membership_healthy`, /clusters' `failed_outlier_check`), but a second health change within the window
reaches the workers' load balancers only when the window ends. Until then ROUND_ROBIN over the stale
[last-ejected, healthy] list sends every first attempt to the ejected host (the retry, avoiding previous
hosts, takes the next one). The rig therefore waits until Envoy's cluster_manager counts every ejection
delivered; from then on no request reaches an ejected host (the backend counts every attempt, retries
included), and with `baseEjectionTime: 300s` none comes back during the measurement.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from xds.cache import SnapshotCache
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NAMES = ("a", "b", "c")
FAILING = {"a", "b"}
CASES = {  # host -> (loadBalancer, extra outlierDetection fields)
    "rr": ("ROUND_ROBIN", ", maxEjectionPercent: 100"),
    "lr": ("LEAST_REQUEST", ", maxEjectionPercent: 100"),
    "floor": ("ROUND_ROBIN", ", maxEjectionPercent: 100, minHealthPercent: 50"),
    "default-max": ("ROUND_ROBIN", ""),
}


@dataclass
class Rig:
    outbound: int
    envoy: EnvoyProcess | None = None
    hits: Counter[str] = field(default_factory=Counter)
    session: aiohttp.ClientSession | None = None

    async def get(self, host: str) -> tuple[int, str]:
        assert self.session is not None
        async with self.session.get(f"http://127.0.0.1:{self.outbound}/", headers={"Host": host}) as resp:
            return resp.status, await resp.text()

    async def stat(self, host: str, name: str) -> int:
        assert self.envoy is not None
        cluster = f"outbound|8080||{host}.default.svc.cluster.local"
        _, text = await self.envoy.admin_get(
            f"/stats?filter=^cluster\\.{cluster.replace('|', '.')}\\.{name}$"
        )
        for line in text.splitlines():
            if line.endswith(f".{name}: " + line.rsplit(" ", 1)[-1]):
                return int(line.rsplit(" ", 1)[-1])
        raise AssertionError(f"no stat {name} of {cluster}: {text}")

    async def manager_stat(self, name: str) -> int:
        assert self.envoy is not None
        _, text = await self.envoy.admin_get(f"/stats?filter=^cluster_manager\\.{name}$")
        for line in text.splitlines():
            if line.startswith(f"cluster_manager.{name}: "):
                return int(line.rsplit(" ", 1)[-1])
        raise AssertionError(f"no stat cluster_manager.{name}: {text}")


def mesh_yaml(ports: dict[tuple[str, str], int]) -> str:
    out = []
    for host, (lb, extra) in CASES.items():
        endpoints = ", ".join(f"{{address: 127.0.0.1, ports: {{http: {ports[host, n]}}}}}" for n in NAMES)
        out.append(f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {host}}}
spec:
  hosts: [{host}]
  resolution: STATIC
  ports: [{{number: 8080, name: http}}]
  endpoints: [{endpoints}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}}}
spec:
  host: {host}
  trafficPolicy:
    loadBalancer: {{simple: {lb}}}
    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 300s{extra}}}
""")
    return "---\n".join(out)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    r = Rig(outbound=free_port(), session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
    runners: list[web.AppRunner] = []
    ports: dict[tuple[str, str], int] = {}
    for host in CASES:
        for name in NAMES:

            async def handle(request: web.Request, who: str = f"{host}/{name}") -> web.Response:
                r.hits[who] += 1
                return web.Response(status=503 if who[-1] in FAILING else 200, text=who)

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            ports[host, name] = free_port()
            await web.TCPSite(runner, "127.0.0.1", ports[host, name]).start()
            runners.append(runner)
    docs, diags = load_text(mesh_yaml(ports), "mesh.yaml")
    result = compile_documents(docs)
    assert not diags and result.config is not None, [str(d) for d in result.errors]
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    meta = {"mode": "sidecar", "namespace": "default", "outbound_port": r.outbound, "labels": {"app": "t"}}
    proxy = ProxyIdentity.from_node("client", {"mecha": meta})
    cache.set_snapshot(proxy.id, SnapshotBuilder().build(result.config, [proxy])[proxy.id])
    yaml_text, _ = bootstrap_for(proxy.id, xds_port, meta, initial_fetch_timeout_s=0.5)
    r.envoy = EnvoyProcess(yaml_text, tmp_path_factory.mktemp("outlier"), name="client")
    try:
        await r.envoy.start(timeout=20)
        for host in CASES:  # routes and endpoints arrive after /ready
            deadline = time.monotonic() + 15
            while (await r.get(host))[0] != 200:
                assert time.monotonic() < deadline, r.envoy.log_tail()
                await asyncio.sleep(0.1)
        for host in CASES:  # every host answers once: the failing ones are ejected at their first 503
            for _ in range(12):
                await r.get(host)
        deadline = time.monotonic() + 15
        for host in ("rr", "lr", "floor"):
            while await r.stat(host, "outlier_detection.ejections_active") < 2:
                assert time.monotonic() < deadline, f"the failing hosts of {host} were never ejected"
                await asyncio.sleep(0.2)
        # Six ejections (two in each of three clusters) are six health updates; each reaches the workers at
        # once (out of the merge window), merged when its window ends, or with a membership change that
        # cancels the merge. Wait until all six are delivered.
        delivered = ("cluster_updated_via_merge", "update_out_of_merge_window", "update_merge_cancelled")
        while sum([await r.manager_stat(name) for name in delivered]) < 6:
            assert time.monotonic() < deadline, "the ejections never reached the worker load balancers"
            await asyncio.sleep(0.1)
        yield r
    finally:
        await r.session.close()  # type: ignore[union-attr]
        await r.envoy.stop()
        await server.stop(0)
        for runner in runners:
            await runner.cleanup()


async def _spread(rig: Rig, host: str, requests: int = 30) -> tuple[Counter[int], Counter[str]]:
    rig.hits.clear()
    statuses = Counter([(await rig.get(host))[0] for _ in range(requests)])
    return statuses, Counter({k.split("/")[1]: v for k, v in rig.hits.items() if k.startswith(f"{host}/")})


@pytest.mark.parametrize("host", ["rr", "lr"])
async def test_after_ejection_requests_go_only_to_the_healthy_host(rig: Rig, host: str) -> None:
    assert await rig.stat(host, "outlier_detection.ejections_active") == 2
    statuses, hits = await _spread(rig, host)
    assert statuses == Counter({200: 30})
    assert hits == Counter({"c": 30})  # not one attempt (retries included) reached an ejected host
    assert await rig.stat(host, "lb_healthy_panic") == 0


async def test_min_health_percent_above_the_healthy_share_routes_in_panic(rig: Rig) -> None:
    assert await rig.stat("floor", "outlier_detection.ejections_active") == 2
    _, hits = await _spread(rig, "floor")
    assert hits["a"] + hits["b"] > 0  # panic mode: the ejected hosts get traffic again, as Envoy in Istio
    assert await rig.stat("floor", "lb_healthy_panic") > 0


async def test_unset_max_ejection_percent_ejects_nothing_of_three_hosts_as_istio(rig: Rig) -> None:
    assert await rig.stat("default-max", "outlier_detection.ejections_active") == 0
    assert await rig.stat("default-max", "outlier_detection.ejections_overflow") > 0
