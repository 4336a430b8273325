"""Several hosts, one control plane: each host (its own loopback address) runs a node-mode Envoy and a
capability service for its apps; requests and pub/sub events cross hosts through the proxies and shared Redis.

host-a 127.0.0.2: productpage-v1, reviews-v1        host-b 127.0.0.3: reviews-v2, ratings-v1
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from xds.bootstrap import BootstrapParams, render
from xds.controlplane.auth import auth_headers
from xds.demo.config import default_layout, demo_documents
from xds.runner.procs import Child, Supervisor
from xds.runner.stack import proxy_synced
from xds.testing.envoy import EnvoyProcess

pytestmark = pytest.mark.e2e

PLACEMENT = {"host-a": ("127.0.0.2", ["productpage-v1", "reviews-v1"]),
             "host-b": ("127.0.0.3", ["reviews-v2", "ratings-v1"])}  # fmt: skip
TOPIC = f"multihost-{uuid.uuid4().hex[:8]}"


def _free_port() -> int:
    with socket.socket() as sock:  # 0.0.0.0: node outbound listeners bind every address
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def _require_redis() -> None:
    """Skip (fail under CI=true) when the shared Redis is not answering; the reason names it."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return
    except OSError:
        message = "Redis is not answering on 127.0.0.1:6379"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: backing servers are required)")
        pytest.skip(message)


def _loopback_alias_usable(address: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


@dataclass
class Host:
    name: str
    ip: str
    workloads: list[str]
    admin: int = field(default_factory=_free_port)
    outbound: int = field(default_factory=_free_port)
    dapr_http: int = field(default_factory=_free_port)
    capabilities_http: int = field(default_factory=_free_port)
    ports: dict[str, tuple[int, int]] = field(default_factory=dict)  # workload -> (app, inbound)

    def __post_init__(self) -> None:
        self.ports = {w: (_free_port(), _free_port()) for w in self.workloads}

    def metadata(self) -> dict[str, Any]:
        apps = []
        for name, (app_port, inbound) in self.ports.items():
            service, version = name.rsplit("-", 1)
            apps.append({"name": service, "app_port": app_port, "inbound_port": inbound,
                         "app_address": self.ip, "labels": {"app": service, "version": version}})  # fmt: skip
        return {
            "mode": "node",
            "namespace": "default",
            "address": self.ip,
            "admin": f"127.0.0.1:{self.admin}",
            "outbound_port": self.outbound,
            "dapr_http_port": self.dapr_http,
            "capabilities_http": f"{self.ip}:{self.capabilities_http}",
            "apps": apps,
        }


@dataclass
class Mesh:
    api: str
    hosts: dict[str, Host]
    where: dict[str, Host]  # workload -> its host


def mesh_config(hosts: dict[str, Host]) -> str:
    where = {w: h for h in hosts.values() for w in h.workloads}
    docs = demo_documents(default_layout("node"))
    for doc in docs:
        if doc["kind"] == "WorkloadEntry":  # each endpoint is its app's inbound listener on its own host
            host = where[doc["metadata"]["name"]]
            doc["spec"]["address"] = host.ip
            doc["spec"]["ports"] = {"http": host.ports[doc["metadata"]["name"]][1]}
    redis = [{"name": "redisHost", "value": "127.0.0.1:6379"}]
    docs += [
        {"apiVersion": "dapr.io/v1alpha1", "kind": "Component", "metadata": {"name": "pubsub"},
         "spec": {"type": "pubsub.redis", "version": "v1", "metadata": redis}},
        {"apiVersion": "dapr.io/v2alpha1", "kind": "Subscription", "metadata": {"name": "to-host-b"},
         "spec": {"pubsubname": "pubsub", "topic": TOPIC, "routes": {"default": f"/events/{TOPIC}"}},
         "scopes": ["host-b"]},
    ]  # fmt: skip
    return yaml.safe_dump_all(docs, sort_keys=False)


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {within}s (last error: {last!r})")


async def _json(method: str, url: str, host: str | None = None, **kw: Any) -> tuple[int, Any]:
    headers = {"Host": host} if host else {}
    headers.update(auth_headers())  # the API token of $MECHA_STATE_DIR (the fixture's state folder)
    headers.update(kw.pop("headers", {}))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.request(method, url, headers=headers, **kw) as resp:
            text = await resp.text()
            return resp.status, (await resp.json(content_type=None)) if text else None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    for ip, _ in PLACEMENT.values():
        if not _loopback_alias_usable(ip):
            pytest.skip(f"cannot bind {ip}: this system routes only 127.0.0.1 to loopback")
    _require_redis()
    tmp = tmp_path_factory.mktemp("multihost")
    hosts = {name: Host(name, ip, workloads) for name, (ip, workloads) in PLACEMENT.items()}
    where = {w: h for h in hosts.values() for w in h.workloads}
    api_port, xds_port = _free_port(), _free_port()
    (tmp / "config").mkdir()
    (tmp / "config" / "mesh.yaml").write_text(mesh_config(hosts))
    sup, envoys = Supervisor(), []
    api = f"http://127.0.0.1:{api_port}"
    py = sys.executable
    # the module's own state folder (config store, tokens), not ./.mecha: nothing leaks between runs; the
    # capability services (reader token) and this module's API calls find it through MECHA_STATE_DIR
    env = pytest.MonkeyPatch()
    env.setenv("MECHA_STATE_DIR", str(tmp / "state"))
    try:
        await sup.start(Child("control-plane", "control-plane", [py, "-m", "xds.cli", "serve", "--port",
                        str(api_port), "--xds-port", str(xds_port), "--config", str(tmp / "config"),
                        "--watch-interval", "0.2", "--insecure-xds", "--state-dir", str(tmp / "state")],
                        tmp / "control-plane.log"))  # fmt: skip
        for host in hosts.values():
            for name, (app_port, _) in host.ports.items():
                service, version = name.rsplit("-", 1)
                argv = [py, "-m", "xds.demo", service, "--host", host.ip, "--port", str(app_port),
                        "--version", version, "--proxy", f"{host.ip}:{host.outbound}"]  # fmt: skip
                await sup.start(Child(name, "app", argv, tmp / f"{name}.log"))
            subscriber = host.ports[host.workloads[-1]][0]  # the host's last app gets its events
            caps = [py, "-m", "capabilities", "--app-id", host.name, "--dapr-listen-address", host.ip,
                    "--dapr-http-port", str(host.capabilities_http), "--dapr-grpc-port", "0",
                    "--control-plane", api, "--app-url", f"http://{host.ip}:{subscriber}"]  # fmt: skip
            await sup.start(Child(f"caps-{host.name}", "capabilities", caps, tmp / f"caps-{host.name}.log"))
            params = BootstrapParams(proxy_id=host.name, xds_port=xds_port, admin_port=host.admin,
                                     metadata=host.metadata(), initial_fetch_timeout_s=1.0)  # fmt: skip
            envoys.append(EnvoyProcess(render(params), tmp, f"envoy-{host.name}"))
        for envoy in envoys:
            await envoy.start(wait_ready=True, timeout=40)

        async def all_synced() -> bool:
            _, data = await _json("GET", f"{api}/api/v1/proxies")
            synced = {r["proxy_id"] for r in data["proxies"] if proxy_synced(r)}
            return synced >= set(hosts)

        await _until(all_synced, 40, "both node proxies SYNCED")
        for host in hosts.values():
            url = f"http://{host.ip}:{host.capabilities_http}/v1.0/healthz"
            await _until(lambda url=url: _ok(url), 40, f"capability service of {host.name}")
        yield Mesh(api, hosts, where)
    finally:
        for envoy in envoys:
            await envoy.stop()
        await sup.stop_all()
        env.undo()


async def _ok(url: str) -> bool:
    status, _ = await _json("GET", url)
    return 200 <= status < 300


async def test_each_host_has_one_node_proxy_at_its_own_address(mesh: Mesh) -> None:
    _, data = await _json("GET", f"{mesh.api}/api/v1/proxies")
    rows = {r["proxy_id"]: r for r in data["proxies"]}
    assert set(rows) == {"host-a", "host-b"}
    assert {r["mode"] for r in rows.values()} == {"node"}
    for host in mesh.hosts.values():  # inbound listeners answer on the host's address only
        _, inbound = host.ports[host.workloads[0]]
        status, body = await _json("GET", f"http://{host.ip}:{inbound}/healthz")
        assert status == 200 and f"{body['app']}-{body['version']}" == host.workloads[0]


async def test_requests_cross_hosts_through_both_proxies(mesh: Mesh) -> None:
    a, b = mesh.hosts["host-a"], mesh.hosts["host-b"]
    _, pp_inbound = a.ports["productpage-v1"]
    # jason -> reviews v2 on host-b, which calls ratings through host-b's proxy: a -> b -> b.
    status, body = await _json(
        "GET", f"http://{a.ip}:{pp_inbound}/productpage", headers={"end-user": "jason"}
    )
    assert status == 200, body
    reviews = body["reviews"]["body"]
    assert (reviews["app"], reviews["version"]) == ("reviews", "v2")
    assert reviews["ratings"]["body"]["app"] == "ratings"
    # From host-b's proxy back to host-a: Host picks the service, the endpoint lives on the other host.
    status, body = await _json("GET", f"http://{b.ip}:{b.outbound}/productpage", host="productpage")
    assert status == 200 and body["app"] == "productpage"
    seen = set()
    for _ in range(40):
        status, body = await _json("GET", f"http://{a.ip}:{a.outbound}/reviews", host="reviews")
        assert status == 200
        seen.add(body["version"])
    assert seen == {"v1", "v2"}  # the 80/20 split spans both hosts


async def test_pubsub_event_published_on_one_host_reaches_an_app_on_the_other(mesh: Mesh) -> None:
    a, b = mesh.hosts["host-a"], mesh.hosts["host-b"]
    marker = uuid.uuid4().hex
    # Published through host-a's Envoy Dapr listener -> host-a's capability service -> shared Redis.
    status, _ = await _json(
        "POST", f"http://127.0.0.1:{a.dapr_http}/v1.0/publish/pubsub/{TOPIC}", json={"marker": marker}
    )
    assert status == 204
    subscriber = b.ports[b.workloads[-1]][0]

    async def delivered() -> bool:
        _, body = await _json("GET", f"http://{b.ip}:{subscriber}/events")
        return any(e["event"].get("data", {}).get("marker") == marker for e in body["events"])

    await _until(delivered, 20, "the event delivered to ratings on host-b")
    _, on_a = await _json("GET", f"http://{a.ip}:{a.ports[a.workloads[-1]][0]}/events")
    assert on_a["events"] == []  # the Subscription is scoped to host-b only
