"""State get/save latency through Envoy + the capability service vs the backend called directly.

Run: .venv/bin/python bench/state_envoy_bench.py [--requests 3000] [--backends in-memory,redis]

One control plane and one sidecar (real Envoy --concurrency 1 + `python -m capabilities`, components pushed
by the control plane). One client, one keep-alive connection, requests one after another (closed loop, so
the numbers are latencies, not throughput). Paths measured in the same run:
  direct      the backend itself: in-memory = the component's get/set called in-process;
              redis = redis-py (asyncio) GET/SET on the same server
  service     HTTP to the capability service's own port (no Envoy)
  envoy       HTTP to Envoy's Dapr listener -> capability service (what an app does)
  bare hop    HTTP to a trivial aiohttp server in its own process (on the capability service's event loop),
              direct and through one static Envoy (reference: the cost of an HTTP client + server process +
              one Envoy hop with nothing else)
  bare hop in process   the same with the trivial server inside the bench process (the reference used before;
              it saves the wake-up of a second process, so it understates a separate server's cost)
added = envoy - direct (p50/p99); added_vs_bare_hop_p50_ms = envoy - bare hop through Envoy - direct: what
Envoy + capability service add over one bare Envoy hop and the backend. For a save the same is also given
against a bare hop doing what a save does on the wire (added_vs_bare_post_hop_p50_ms: a POST of the same body,
204 back, through the bare Envoy; a GET without a body is cheaper for the client, Envoy and the server alike)
and, on Redis, against the store's own write script called directly (direct_script: EVALSHA of the ETag
script, what a save costs Redis itself; a plain SET is not the same work). Goal: that added p50 < 0.3 ms.
service_cpu_us_per_request: CPU (user+sys, /proc) of the capability service process per request.
server_cpu_us_per_request (bare_hop, bare_post_hop): the same for the trivial aiohttp server answering the
direct GET / POST in this run: what aiohttp on this event loop costs per request with nothing behind it.
service_cpu_over_bare_server_us = the service's CPU per get (save) minus the trivial server's per GET (POST):
what the Dapr API layer, the state service and the store's client add over aiohttp itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from mesh_rig import (
    PY,
    ControlPlane,
    Sidecar,
    component,
    free_port,
    http_status,
    percentiles,
    spawn,
    start_static_envoy,
    stop,
    wait_until,
)
from procstat import cpu_seconds

from capabilities import registry
from capabilities.daprspec.component import ComponentSpec

VALUE = {"user": "ada", "cart": [1, 2, 3], "total": 42.5}
BODY = json.dumps([{"key": "k1", "value": VALUE}]).encode()


async def timed(n: int, op: Callable[[], Awaitable[object]], warmup: int = 200) -> list[float]:
    for _ in range(warmup):
        await op()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - t)
    return samples


def http_ops(session: aiohttp.ClientSession, base: str, store: str) -> tuple[Callable, Callable]:
    async def get() -> None:
        async with session.get(f"{base}/v1.0/state/{store}/k1") as r:
            await r.read()
            assert r.status == 200, r.status

    async def save() -> None:
        async with session.post(f"{base}/v1.0/state/{store}", data=BODY) as r:
            await r.read()
            assert r.status == 204, r.status

    return get, save


async def direct_ops(backend: str) -> tuple[Callable, Callable, Callable]:
    if backend == "in-memory":
        store = registry.create(ComponentSpec(name="direct", type="state.in-memory"))
        await store.init()
        from capabilities.blocks.state.contract import SetRequest

        raw = json.dumps(VALUE).encode()

        async def get() -> None:
            await store.get("k1")

        async def save() -> None:
            await store.set(SetRequest(key="k1", value=raw))

        return get, save, store.close
    import redis.asyncio as aioredis

    client = aioredis.Redis(host="127.0.0.1", port=6379)
    raw = json.dumps(VALUE)

    async def rget() -> None:
        await client.get("bench-direct-k1")

    async def rset() -> None:
        await client.set("bench-direct-k1", raw)

    await rset()
    return rget, rset, client.aclose


async def redis_script_save() -> Callable[[], Awaitable[object]]:
    """The Redis store's own write, called directly: its component's multi() with one plain save."""
    from capabilities.blocks.state.contract import SetRequest

    store = registry.create(
        ComponentSpec(name="direct-script", type="state.redis", metadata={"redisHost": "127.0.0.1:6379"})
    )
    await store.init()
    raw = json.dumps(VALUE).encode()
    return lambda: store.set(SetRequest(key="bench-direct-script-k1", value=raw))


# The trivial server as its own process, on the event loop `python -m capabilities` uses (same comparison).
TRIVIAL_SERVER = """
import asyncio, sys
from aiohttp import web
from capabilities.eventloop import loop_factory

async def hello(_r):
    return web.Response(body=b'{"ok":true}', content_type="application/json")

async def post(r):
    await r.read()
    return web.Response(status=204)

async def main(port):
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_post("/hello", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()

with asyncio.Runner(loop_factory=loop_factory()) as runner:
    runner.run(main(int(sys.argv[1])))
"""


async def trivial_server(port: int) -> web.AppRunner:
    async def hello(_r: web.Request) -> web.Response:
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


async def run(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    backends = [b for b in args.backends.split(",") if b != "redis" or redis_up()]
    n = args.requests
    car = Sidecar.fresh("bench")
    cp = ControlPlane(folder=folder)
    docs = [*car.docs(), component("in-memory", "state.in-memory")]
    if "redis" in backends:
        docs.append(component("redis", "state.redis", {"redisHost": "127.0.0.1:6379"}))
    cp.start(docs)
    envoy = spawn(car.envoy_argv(cp.xds_port, folder), folder / "envoy.out")
    service = spawn(car.capabilities_argv(cp.api), folder / "capabilities.log")
    trivial_port, hop_port = free_port(), free_port()
    inproc_port, inproc_hop_port = free_port(), free_port()
    trivial = spawn([PY, "-c", TRIVIAL_SERVER, str(trivial_port)], folder / "trivial.log")
    runner = await trivial_server(inproc_port)
    static = inproc_static = None
    out: dict[str, object] = {"requests": n, "value_bytes": len(json.dumps(VALUE))}
    try:
        wait_until(car.envoy_ready, 30, "envoy ready")
        wait_until(lambda: http_status(f"{car.dapr_http}/v1.0/healthz/outbound") == 204, 30, "sidecar ready")
        wait_until(lambda: http_status(f"http://127.0.0.1:{trivial_port}/hello") == 200, 30, "trivial server")
        static = start_static_envoy(hop_port, trivial_port, folder)
        inproc_static = start_static_envoy(inproc_hop_port, inproc_port, folder)
        service_base = f"http://127.0.0.1:{car.proxy.capabilities_http_port}"
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def hello(base: str) -> None:
                async with session.get(f"{base}/hello") as r:
                    await r.read()

            cpu0 = cpu_seconds(trivial.pid)
            direct_hello = await timed(n, lambda: hello(f"http://127.0.0.1:{trivial_port}"))
            trivial_get_cpu = (cpu_seconds(trivial.pid) - cpu0) / (n + 200) * 1e6
            envoy_hello = await timed(n, lambda: hello(f"http://127.0.0.1:{hop_port}"))
            out["bare_hop"] = {
                "direct": percentiles(direct_hello),
                "through_envoy": percentiles(envoy_hello),
                "envoy_added_p50_ms": round(
                    (sorted(envoy_hello)[n // 2] - sorted(direct_hello)[n // 2]) * 1000, 3
                ),
                "server_cpu_us_per_request": round(trivial_get_cpu, 1),
            }
            inproc_direct = await timed(n, lambda: hello(f"http://127.0.0.1:{inproc_port}"))
            inproc_envoy = await timed(n, lambda: hello(f"http://127.0.0.1:{inproc_hop_port}"))
            out["bare_hop_in_process"] = {
                "direct": percentiles(inproc_direct),
                "through_envoy": percentiles(inproc_envoy),
            }

            async def post_hello(base: str) -> None:
                async with session.post(f"{base}/hello", data=BODY) as r:
                    await r.read()
                    assert r.status == 204, r.status

            cpu0 = cpu_seconds(trivial.pid)
            direct_post = await timed(n, lambda: post_hello(f"http://127.0.0.1:{trivial_port}"))
            trivial_post_cpu = (cpu_seconds(trivial.pid) - cpu0) / (n + 200) * 1e6
            envoy_post = await timed(n, lambda: post_hello(f"http://127.0.0.1:{hop_port}"))
            out["bare_post_hop"] = {
                "direct": percentiles(direct_post),
                "through_envoy": percentiles(envoy_post),
                "server_cpu_us_per_request": round(trivial_post_cpu, 1),
            }
            bare_server_cpu = {"get": trivial_get_cpu, "save": trivial_post_cpu}
            hop_p50 = {
                "bare_post_hop": percentiles(envoy_post)["p50_ms"],
                "bare_hop": out["bare_hop"]["through_envoy"]["p50_ms"],  # type: ignore[index]
                "bare_hop_in_process": percentiles(inproc_envoy)["p50_ms"],
            }
            for backend in backends:
                dget, dsave, close = await direct_ops(backend)
                rows: dict[str, object] = {}
                for op_name, direct_op, idx in (("get", dget, 0), ("save", dsave, 1)):
                    # save first so get finds the key
                    await http_ops(session, car.dapr_http, backend)[1]()
                    d = await timed(n, direct_op)
                    cpu0 = cpu_seconds(service.pid)
                    s = await timed(n, http_ops(session, service_base, backend)[idx])
                    cpu_per_request = (cpu_seconds(service.pid) - cpu0) / (n + 200)  # + warm-up requests
                    e = await timed(n, http_ops(session, car.dapr_http, backend)[idx])
                    pd, ps, pe = percentiles(d), percentiles(s), percentiles(e)
                    rows[op_name] = {
                        "direct": pd,
                        "service": ps,
                        "envoy": pe,
                        "added_p50_ms": round(pe["p50_ms"] - pd["p50_ms"], 3),
                        "added_p99_ms": round(pe["p99_ms"] - pd["p99_ms"], 3),
                        "added_vs_bare_hop_p50_ms": round(
                            pe["p50_ms"] - hop_p50["bare_hop"] - pd["p50_ms"], 3
                        ),
                        "added_vs_bare_hop_in_process_p50_ms": round(
                            pe["p50_ms"] - hop_p50["bare_hop_in_process"] - pd["p50_ms"], 3
                        ),
                        "service_cpu_us_per_request": round(cpu_per_request * 1e6, 1),
                        "service_cpu_over_bare_server_us": round(
                            cpu_per_request * 1e6 - bare_server_cpu[op_name], 1
                        ),
                    }
                    if op_name == "save":
                        row = rows[op_name]
                        assert isinstance(row, dict)
                        row["added_vs_bare_post_hop_p50_ms"] = round(
                            pe["p50_ms"] - hop_p50["bare_post_hop"] - pd["p50_ms"], 3
                        )
                        if backend == "redis":
                            script = percentiles(await timed(n, await redis_script_save()))
                            row["direct_script"] = script
                            row["added_vs_bare_post_hop_and_script_p50_ms"] = round(
                                pe["p50_ms"] - hop_p50["bare_post_hop"] - script["p50_ms"], 3
                            )
                await close()
                out[backend] = rows
    finally:
        await runner.cleanup()
        for proc in (static, inproc_static, trivial, service, envoy):
            stop(proc)
        cp.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--backends", default="in-memory,redis")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mecha-state-"))
    try:
        print(json.dumps(asyncio.run(run(args, folder)), indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
