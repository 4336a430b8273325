"""Fuzz the apply/delete API of a real `mecha serve` (subprocess): thousands of malformed bodies with the
token and a few hundred without. No answer may be a 5xx, the process must survive, and the last good config
is still served afterwards. A seeded generator (reproducible: FUZZ_SEED) keeps the run bounded."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from xds.controlplane.auth import API_TOKEN_FILE
from xds.testing.envoy import free_port

WITH_TOKEN = 2_400
WITHOUT_TOKEN = 300
CONCURRENCY = 8
SEED = int(os.environ.get("FUZZ_SEED", "10"))

GOOD = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: fuzz-anchor}
spec:
  hosts: [anchor.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"""
VALID_SHAPES = [
    GOOD,
    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n"
    "  http: [{route: [{destination: {host: r, subset: v1}, weight: 100}], retries: {attempts: 3}}]\n",
    "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec:\n  type: state.redis\n"
    "  version: v1\n  metadata: [{name: redisHost, value: 'x:1'}, {name: redisPassword, value: p}]\n",
]
CONTENT_TYPES = [
    "application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/plain",
    "application/json; charset=utf-16", "application/yaml; charset=utf-16-le",
    "application/yaml; charset=latin-1",
    "application/yaml; charset=nope", "application/octet-stream", "multipart/form-data; boundary=x", "",
]  # fmt: skip


def _mutate(rng: random.Random, text: str) -> str:
    """Damage a valid document: flip, cut, duplicate, inject YAML syntax."""
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        op, at = rng.randrange(5), rng.randrange(max(1, len(chars)))
        if op == 0 and chars:
            chars[at] = chr(rng.choice([0, 7, 9, 10, 34, 38, 42, 58, 91, 93, 123, 125, 0x1F600, 0xFFFE]))
        elif op == 1:
            del chars[at : at + rng.randint(1, 40)]
        elif op == 2:
            chars[at:at] = rng.choice(
                ["&a ", "*a", "!!python/object:os.system ", "<<: *a\n", "---\n", ": :", "\t"]
            )
        elif op == 3:
            chars[at:at] = chars[at : at + rng.randint(1, 80)]
        else:
            chars[at:at] = str(rng.randint(-(10**30), 10**30))
    return "".join(chars)


def _bodies(rng: random.Random) -> Iterator[tuple[bytes, str, str]]:
    """(body, content type, query) forever: each a malformed or hostile apply/delete request."""
    while True:
        kind = rng.randrange(14)
        ctype = rng.choice(CONTENT_TYPES)
        query = rng.choice(
            ["?dry_run=1", "?dry_run=0", "?dry_run=1&filename=" + "x" * rng.randint(0, 300), ""]
        )
        depth = rng.choice([50, 101, 999, 5000])
        if kind == 0:
            body = rng.randbytes(rng.randint(0, 2000))
        elif kind == 1:
            body = _mutate(rng, rng.choice(VALID_SHAPES)).encode("utf-8", "surrogatepass")
        elif kind == 2:
            body = rng.choice(VALID_SHAPES).encode("utf-16")  # declared or not: decode or refuse, not 500
        elif kind == 3:
            body = ("[" * depth + "]" * depth).encode()
            ctype = "application/json"
        elif kind == 4:
            body = (
                "a: " + "[" * depth + "]" * depth if rng.random() < 0.5 else "{a: " * depth + "}" * depth
            ).encode()
        elif kind == 5:
            width, levels = rng.randint(2, 12), rng.randint(3, 10)
            lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
            lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
            body = "\n".join(lines).encode()
        elif kind == 6:
            body = f"spec: {{n: {'9' * rng.choice([10, 4301, 20000])}}}".encode()
        elif kind == 7:
            body = (
                json.dumps({"files": [{"name": "a", "text": GOOD}]})
                .replace("}", ', "files": []}', 1)
                .encode()
            )
            ctype = "application/json"
        elif kind == 8:
            shapes = [[], 1, "x", None, {"files": 3}, {"files": [1]}, {"files": [{"text": 2}]},
                      {"files": [{"name": ["x"], "text": "a: b"}]}]  # fmt: skip
            body = json.dumps(rng.choice(shapes)).encode()
            ctype = "application/json"
        elif kind == 9:
            text = _mutate(rng, rng.choice(VALID_SHAPES))
            body = json.dumps({"files": [{"name": "m.yaml", "text": text}]}).encode()
            ctype = "application/json"
        elif kind == 10:
            body = rng.choice(
                ["- a\n- b\n", "42\n", "'str'\n", "null\n", "---\n---\n", "~\n", "!!binary x\n"]
            ).encode()
        elif kind == 11:
            body = (GOOD + "metadata: {name: dup}\n").encode()  # duplicate key
        elif kind == 12:
            body = b"\xef\xbb\xbf" + rng.randbytes(50) + b"\xc3\x28\xa0\xa1"
        else:
            body = (
                "kind: VirtualService\n" + "spec: {x: 1e99999, y: -.inf, z: 0x" + "f" * 500 + "}\n"
            ).encode()
        yield body, ctype, query


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    api_port, xds_port = free_port(), free_port()
    log = (tmp_path / "cp.log").open("wb")
    argv = [sys.executable, "-m", "xds.cli", "serve", "--port", str(api_port), "--xds-port", str(xds_port),
            "--state-dir", str(tmp_path / "state"), "--no-watch"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{api_port}", proc, tmp_path / "cp.log"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def _wait_ready(api: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            assert proc.poll() is None, "mecha serve exited; see " + str(log)
            try:
                async with session.get(api + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"mecha serve not ready; see {log}")


async def test_apply_api_survives_malformed_input(serve: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    api, proc, log = serve
    await _wait_ready(api, proc, log)
    token = (log.parent / "state" / API_TOKEN_FILE).read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    rng = random.Random(SEED)
    statuses: Counter[int] = Counter()
    unauthenticated: Counter[int] = Counter()
    failures: list[str] = []
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30), skip_auto_headers={"Content-Type"}
    ) as session:
        async with session.post(
            api + "/api/v1/apply", data=GOOD, headers={**auth, "Content-Type": "text/yaml"}
        ) as r:
            assert r.status == 200, await r.text()
        async with session.get(api + "/api/v1/config", headers=auth) as r:
            good = await r.json()
        queue: asyncio.Queue[tuple[bytes, str, str, bool]] = asyncio.Queue()
        bodies = _bodies(rng)
        for index in range(WITH_TOKEN + WITHOUT_TOKEN):
            body, ctype, query = next(bodies)
            queue.put_nowait((body, ctype, query, index < WITH_TOKEN))

        async def worker() -> None:
            while not queue.empty():
                body, ctype, query, with_token = queue.get_nowait()
                path = (
                    rng.choice(["/api/v1/apply", "/api/v1/delete"])
                    if "dry_run=1" in query
                    else "/api/v1/apply"
                )
                headers = {**(auth if with_token else {}), **({"Content-Type": ctype} if ctype else {})}
                async with session.post(api + path + query, data=body, headers=headers) as resp:
                    text = await resp.text()
                    (statuses if with_token else unauthenticated)[resp.status] += 1
                    if resp.status >= 500 or (not with_token and resp.status != 401):
                        failures.append(f"{resp.status} {path}{query} {ctype!r} {body[:120]!r}: {text[:300]}")

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.monotonic() - started
        assert proc.poll() is None, f"mecha serve died:\n{log.read_text()[-3000:]}"
        assert not failures, f"{len(failures)} bad answers, first ones:\n" + "\n".join(failures[:10])
        assert sum(statuses.values()) == WITH_TOKEN and set(unauthenticated) == {401}
        assert all(400 <= s < 500 or s == 200 for s in statuses), statuses
        async with session.get(api + "/api/v1/config", headers=auth) as r:
            after = await r.json()

        def anchor(config: dict[str, Any]) -> list[Any]:  # mutations may add documents, not change this one
            return [
                d["body"]
                for d in config["documents"]
                if (d["kind"], d["name"]) == ("ServiceEntry", "fuzz-anchor")
            ]

        assert anchor(after) == anchor(good) and len(anchor(good)) == 1
        async with session.get(api + "/healthz") as r:
            assert r.status == 200
    tracebacks = log.read_text().count("Traceback")
    assert tracebacks == 0, log.read_text()[-3000:]
    print(f"fuzz: {WITH_TOKEN + WITHOUT_TOKEN} requests in {elapsed:.1f}s; statuses {dict(statuses)}")
