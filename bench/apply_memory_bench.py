"""Control-plane memory under refused changes: does RSS creep while bad configs are applied and refused?

A real `mecha serve` subprocess (its own state folder, no config folders) is sent 5,000 refused changes over
the HTTP API in 4 rounds of 1,250: unknown fields, regexes Envoy would refuse, invalid YAML, huge bodies, and
references to hosts that do not exist, each one different (names, text) so anything keyed by document text or
diagnostic text grows if it is kept. Round 1 warms up (imports, caches, allocator arenas); rounds 2-4 together
must grow the server's RSS by less than 5 %. Every answer must be a 4xx.

With --in-process the control plane runs inside the bench under tracemalloc instead (same API, same
requests), and the bench prints where the memory kept after each round was allocated: the tool that finds
what is retained, not a number to compare.

    .venv/bin/python bench/apply_memory_bench.py [--per-round 1250] [--rounds 4] [--in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from procstat import rss_mb  # noqa: E402

from xds.controlplane.auth import API_TOKEN_FILE  # noqa: E402
from xds.testing.envoy import free_port  # noqa: E402

CONCURRENCY = 4
MAX_GROWTH = 0.05  # rounds 2..N together, relative to the RSS after round 1


# ---------------------------------------------------------------- refused documents


def virtual_service(name: str, http: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [f"{name}.default.svc.cluster.local"], "http": http, **extra},
    }


def bad_document(i: int, rng: random.Random) -> tuple[str, str]:
    """(file name, YAML body) of one change the control plane must refuse; every one is different."""
    name = f"bad-{i}-{rng.randrange(10**9)}"
    route = [{"destination": {"host": f"{name}.default.svc.cluster.local"}}]
    kind = i % 6
    if kind == 0:  # unknown field
        doc = virtual_service(name, [{"route": route, f"retriez{i}": {"attempts": i}}])
    elif kind == 1:  # a regex RE2 (and so Envoy) refuses
        doc = virtual_service(name, [{"match": [{"uri": {"regex": f"(?=x{i})"}}], "route": route}])
    elif kind == 2:  # not YAML at all
        return f"{name}.yaml", f"kind: VirtualService\nmetadata: {{name: {name}\n  spec: [unclosed {i}\n"
    elif kind == 3:  # a huge body (~1 MB): a long unknown field and a few hundred routes
        http = [{"match": [{"uri": {"prefix": f"/{name}/{n}"}}], "route": route} for n in range(300)]
        doc = virtual_service(name, http, notes=rng.randbytes(400_000).hex())
    elif kind == 4:  # wrong types in many places
        doc = virtual_service(name, [{"route": route, "timeout": {"seconds": name}, "retries": [i]}])
        doc["spec"]["hosts"] = name  # type: ignore[index]
    else:  # a kind nobody knows, with a long text field
        doc = {
            "apiVersion": "example.com/v1",
            "kind": f"Thing{i}",
            "metadata": {"name": name},
            "x": name * 50,
        }
    return f"{name}.yaml", json.dumps(doc)  # JSON is YAML


# ---------------------------------------------------------------- the control plane under test


class Server:
    api: str
    token: str

    def memory_mb(self) -> float:
        raise NotImplementedError


class Subprocess(Server):
    """`mecha serve` as its own process; RSS from /proc."""

    def __init__(self, proc: asyncio.subprocess.Process, api: str, token: str) -> None:
        self.proc, self.api, self.token = proc, api, token

    def memory_mb(self) -> float:
        return rss_mb(self.proc.pid)


class InProcess(Server):
    """The control plane in this process under tracemalloc; memory is what tracemalloc sees as live."""

    def __init__(self, api: str, token: str) -> None:
        self.api, self.token = api, token

    def memory_mb(self) -> float:
        return tracemalloc.get_traced_memory()[0] / 2**20


async def wait_ready(api: str, alive: Callable[[], bool]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if not alive():
                raise RuntimeError("the control plane exited while starting")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(api + "/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{api}/readyz never answered 200")


@contextlib.asynccontextmanager
async def subprocess_server(state: Path) -> AsyncIterator[Server]:
    api_port, xds_port = free_port(), free_port()
    argv = [sys.executable, "-m", "xds.cli", "serve", "--port", str(api_port), "--xds-port", str(xds_port),
            "--state-dir", str(state)]  # fmt: skip
    log = open(state.parent / "control-plane.log", "wb")  # noqa: ASYNC230 - opened once
    proc = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log, start_new_session=True)
    api = f"http://127.0.0.1:{api_port}"
    try:
        try:
            await wait_ready(api, lambda: proc.returncode is None)
        except (RuntimeError, TimeoutError) as exc:
            log.flush()
            tail = (state.parent / "control-plane.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; its log ends:\n{tail}") from None
        yield Subprocess(proc, api, (state / API_TOKEN_FILE).read_text().strip())
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


@contextlib.asynccontextmanager
async def in_process_server(state: Path) -> AsyncIterator[Server]:
    from xds.controlplane.api import start_api
    from xds.controlplane.runtime import ControlPlane
    from xds.controlplane.settings import Settings

    tracemalloc.start(25)
    settings = Settings(api_port=free_port(), xds_port=free_port(), state_dir=state)
    cp = ControlPlane(settings)
    runner, api_port = await start_api(cp, settings.api_host, settings.api_port)
    await cp.start()
    api = f"http://127.0.0.1:{api_port}"
    try:
        await wait_ready(api, lambda: True)
        yield InProcess(api, (state / API_TOKEN_FILE).read_text().strip())
    finally:
        await cp.stop()
        await runner.cleanup()


# ---------------------------------------------------------------- the run


async def one_round(server: Server, bodies: list[tuple[str, str]]) -> Counter[int]:
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    auth = {"Authorization": f"Bearer {server.token}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            while not queue.empty():
                filename, body = queue.get_nowait()
                headers = {**auth, "Content-Type": "application/yaml"}
                url = f"{server.api}/api/v1/apply?filename={filename}"
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    rounds = [
        [bad_document(r * args.per_round + i, rng) for i in range(args.per_round)] for r in range(args.rounds)
    ]
    with tempfile.TemporaryDirectory(prefix="apply-memory-") as tmp:
        state = Path(tmp) / "state"
        start = in_process_server if args.in_process else subprocess_server
        async with start(state) as server:
            print(f"{'in-process (tracemalloc MB)' if args.in_process else 'mecha serve RSS MB'}: "
                  f"start {server.memory_mb():.1f}")  # fmt: skip
            after: list[float] = []
            snapshots: list[tracemalloc.Snapshot] = []
            for n, bodies in enumerate(rounds, 1):
                started = time.perf_counter()
                statuses = await one_round(server, bodies)
                await asyncio.sleep(args.settle)  # anything deferred (logging, GC policy) runs
                if args.in_process:
                    gc.collect()
                    snapshots.append(tracemalloc.take_snapshot())
                after.append(server.memory_mb())
                bad = {s: c for s, c in statuses.items() if not 400 <= s < 500}
                print(f"round {n}: {len(bodies)} refused changes in {time.perf_counter() - started:.1f} s, "
                      f"statuses {dict(sorted(statuses.items()))}, memory {after[-1]:.1f} MB")  # fmt: skip
                if bad:
                    print(f"FAIL: answers that are not 4xx: {bad}")
                    return 1
            growth = (after[-1] - after[0]) / after[0]
            print(f"growth over rounds 2-{len(rounds)}: {after[-1] - after[0]:+.1f} MB ({growth:+.1%})")
            if args.in_process and len(snapshots) > 1:
                print("largest growths since round 1 (allocation site):")
                for stat in snapshots[-1].compare_to(snapshots[0], "traceback")[:8]:
                    frame = stat.traceback[-1]
                    print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} objs  "
                          f"{frame.filename}:{frame.lineno}")  # fmt: skip
            if not args.in_process and growth >= MAX_GROWTH:
                print(f"FAIL: RSS grew {growth:.1%} (limit {MAX_GROWTH:.0%})")
                return 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-round", type=int, default=1_250)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("MECHA_BENCH_SEED", "10")))
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to wait after each round")
    parser.add_argument("--in-process", action="store_true", help="tracemalloc the control plane in-process")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
