"""State get/save latency: through the capability service (HTTP, separate process) vs the backend called
directly (the same component class, in-process). Prints p50/p99 per path and the added latency.

    .venv/bin/python bench/state_bench.py [--n 2000] [--backends in-memory,redis] [--value-bytes 100]

The lead adds the Envoy hop on top of these numbers (Envoy listener -> capability service).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKENDS = {
    "in-memory": ("state.in-memory", {}),
    "redis": ("state.redis", {"redisHost": "127.0.0.1:6379"}),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def measure(n: int, call: Callable[[int], Awaitable[None]]) -> list[float]:
    for i in range(min(200, n)):  # warm-up: connections, caches, JIT-less but lazy imports
        await call(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def write_resources(folder: Path) -> None:
    for name, (ctype, metadata) in BACKENDS.items():
        items = "".join(f'\n  - name: {k}\n    value: "{v}"' for k, v in metadata.items())
        (folder / f"{name}.yaml").write_text(
            f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n"
            f"spec:\n  type: {ctype}\n  version: v1\n  metadata:{items or ' []'}\n"
        )


async def run(n: int, backends: list[str], value_bytes: int) -> None:
    import aiohttp

    from capabilities import registry
    from capabilities.blocks.state.contract import SetRequest
    from capabilities.daprspec.component import ComponentSpec

    value = {"payload": "x" * value_bytes}
    raw = json.dumps(value, separators=(",", ":")).encode()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        write_resources(Path(tmp))
        proc = subprocess.Popen(  # noqa: ASYNC220 - polls/spawns outside asyncio's view
            [sys.executable, "-m", "capabilities", "--app-id", "bench", "--dapr-http-port", str(port),
             "--resources-path", tmp, "--log-level", "error"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    try:
                        async with http.get(f"{base}/v1.0/healthz/outbound") as resp:
                            if resp.status == 204:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                print(f"n={n} value={len(raw)} bytes, sequential requests, latency in microseconds")
                print(f"{'backend':10} {'op':5} {'direct p50':>11} {'p99':>8} {'service p50':>12} {'p99':>8}"
                      f" {'added p50':>10} {'p99':>8}")  # fmt: skip
                for name in backends:
                    ctype, metadata = BACKENDS[name]
                    store = registry.create(ComponentSpec(name=name, type=ctype, metadata=dict(metadata)))
                    await store.init()

                    async def direct_save(i: int, store=store) -> None:
                        await store.set(SetRequest(key=f"bench||direct-{i % 100}", value=raw))

                    async def direct_get(i: int, store=store) -> None:
                        await store.get(f"bench||direct-{i % 100}")

                    async def service_save(i: int, name=name) -> None:
                        body = [{"key": f"svc-{i % 100}", "value": value}]
                        async with http.post(f"{base}/v1.0/state/{name}", json=body) as resp:
                            assert resp.status == 204, await resp.text()

                    async def service_get(i: int, name=name) -> None:
                        async with http.get(f"{base}/v1.0/state/{name}/svc-{i % 100}") as resp:
                            assert resp.status == 200, await resp.text()
                            await resp.read()

                    for op, direct, service in (
                        ("save", direct_save, service_save),
                        ("get", direct_get, service_get),
                    ):
                        d50, d99 = percentiles(await measure(n, direct))
                        s50, s99 = percentiles(await measure(n, service))
                        print(f"{name:10} {op:5} {d50:11.0f} {d99:8.0f} {s50:12.0f} {s99:8.0f}"
                              f" {s50 - d50:10.0f} {s99 - d99:8.0f}")  # fmt: skip
                    await store.close()
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--backends", default="in-memory,redis")
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; known: {', '.join(BACKENDS)}")
    asyncio.run(run(args.n, backends, args.value_bytes))


if __name__ == "__main__":
    main()
