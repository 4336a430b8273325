"""docs/migration-walkthrough.md, step by step: Bookinfo under `mecha up` with your own config folder, shift
traffic between versions with `mecha apply`, then give one service (reviews) state and pub/sub on Redis."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from xds.controlplane.auth import read_token
from xds.demo.config import demo_config, make_layout
from xds.runner.stack import Stack, StackOptions

pytestmark = pytest.mark.e2e

ALL_V2 = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 0}
    - {destination: {host: reviews, subset: v2}, weight: 100}
"""

STATE_AND_PUBSUB = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: reviews-state, namespace: default}}
spec:
  type: state.redis
  version: v1
  metadata: [{{name: redisHost, value: "127.0.0.1:6379"}}, {{name: keyPrefix, value: name}}]
scopes: [reviews]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: reviews-events, namespace: default}}
spec:
  type: pubsub.redis
  version: v1
  metadata: [{{name: redisHost, value: "127.0.0.1:6379"}}]
scopes: [reviews]
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {{name: reviews-new-ratings, namespace: default}}
spec:
  pubsubname: reviews-events
  topic: {topic}
  routes: {{default: /events/{topic}}}
scopes: [reviews]
"""


def _require_redis() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return
    except OSError:
        message = "Redis is not answering on 127.0.0.1:6379"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: backing servers are required)")
        pytest.skip(message)


class _Ports:
    def __init__(self) -> None:
        self.used: set[int] = set()

    def __call__(self, _role: str = "", _index: int = 0) -> int:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self.used:
                self.used.add(port)
                return port


async def _request(method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.request(method, url, **kw) as resp:
            text = await resp.text()
            try:
                return resp.status, (await resp.json(content_type=None)) if text else None
            except ValueError:
                return resp.status, text


async def _mecha(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds.cli", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


async def _versions(entry: str, n: int = 30) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        status, body = await _request("GET", f"{entry}/reviews", headers={"Host": "reviews"})
        seen[body["version"] if status == 200 else f"HTTP {status}"] += 1
    return seen


def _replace_file(path: Path, text: str) -> None:
    """Write as `sed -i` does (a new file renamed over the old): the watcher never reads half a file."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


async def test_bookinfo_then_traffic_shift_then_state_and_pubsub(tmp_path: Path) -> None:
    _require_redis()
    ports = _Ports()
    layout = make_layout("sidecar", ports)
    config = tmp_path / "bookinfo"  # step 1: your own config folder (here: the demo's Bookinfo YAML)
    config.mkdir()
    (config / "bookinfo.yaml").write_text(demo_config(layout))
    stack = Stack(
        StackOptions(layout=layout, state_dir=tmp_path / ".mecha", api_port=ports(), xds_port=ports(),
                     config_dir=config, watch_interval=0.2)
    )  # fmt: skip
    api = stack.api
    try:
        await stack.start(90)
        server = ("--server", api, "--token", read_token(stack.o.state_dir) or "")
        pp = layout.workload("productpage-v1")
        entry = f"http://127.0.0.1:{layout.proxy_of('productpage-v1').outbound_port}"
        status, body = await _request("GET", f"http://127.0.0.1:{pp.inbound_port}/productpage")
        assert status == 200 and body["reviews"]["status"] == 200
        assert set(await _versions(entry)) <= {"v1", "v2"}

        # Step 2: shift all traffic to v2 by editing the watched folder (as the doc's sed does); the folder
        # owns VirtualService reviews, so `mecha apply` of it is refused, naming the folder.
        (tmp_path / "all-v2.yaml").write_text(ALL_V2)
        code, out = await _mecha("apply", "-f", str(tmp_path / "all-v2.yaml"), *server)
        assert code == 1 and str(config) in out, out
        assert "VirtualService default/reviews is owned by folder" in out, out
        bookinfo = config / "bookinfo.yaml"
        edited = bookinfo.read_text().replace("weight: 80", "weight: 0").replace("weight: 20", "weight: 100")
        _replace_file(bookinfo, edited)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the folder is polled, then pushed
            if await _versions(entry, 10) == Counter({"v2": 10}):
                break
            await asyncio.sleep(0.2)
        await stack.wait_synced()
        code, out = await _mecha("proxy-status", *server)
        assert code == 0, out  # exits 1 while any proxy is STALE or NACKED
        assert await _versions(entry) == Counter({"v2": 30})

        # Step 3: state and pub/sub for reviews only (scopes), applied like any other config.
        topic = f"new-ratings-{uuid.uuid4().hex[:8]}"
        (tmp_path / "reviews-dapr.yaml").write_text(STATE_AND_PUBSUB.format(topic=topic))
        code, out = await _mecha("apply", "-f", str(tmp_path / "reviews-dapr.yaml"), *server)
        assert code == 0 and "Component default/reviews-state created" in out, out
        reviews_dapr = f"http://127.0.0.1:{layout.proxy_of('reviews-v1').dapr_http_port}/v1.0"
        key = uuid.uuid4().hex
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline:  # the capability service picks the change up by long-poll
            status, _ = await _request(
                "POST", f"{reviews_dapr}/state/reviews-state", json=[{"key": key, "value": {"stars": 4}}]
            )
            if status == 204:
                break
            await asyncio.sleep(0.3)
        assert status == 204
        status, body = await _request("GET", f"{reviews_dapr}/state/reviews-state/{key}")
        assert (status, body) == (200, {"stars": 4})
        pp_dapr = f"http://127.0.0.1:{layout.proxy_of('productpage-v1').dapr_http_port}/v1.0"
        status, _ = await _request("GET", f"{pp_dapr}/state/reviews-state/{key}")
        assert status >= 400  # scoped to reviews: productpage has no such store

        marker = uuid.uuid4().hex
        status, _ = await _request(
            "POST", f"{reviews_dapr}/publish/reviews-events/{topic}", json={"marker": marker}
        )
        assert status == 204
        apps = [layout.workload(n).app_port for n in ("reviews-v1", "reviews-v2")]
        deadline = time.monotonic() + 20
        delivered = False
        while time.monotonic() < deadline and not delivered:
            for port in apps:  # both versions share app id "reviews": one consumer group, one delivery
                _, body = await _request("GET", f"http://127.0.0.1:{port}/events")
                delivered |= any(e["event"].get("data", {}).get("marker") == marker for e in body["events"])
            await asyncio.sleep(0.2)
        assert delivered, "the event never reached a reviews app"
    finally:
        await stack.stop()
