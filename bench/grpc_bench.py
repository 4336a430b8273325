"""gRPC API benchmark: state get and publish through the capability service, vs HTTP and vs the backend.

Starts `python -m capabilities` (its own process, as in production) with Redis state + Redis pub/sub
components, then measures sequential round trips from this process:

  backend direct   redis-py (asyncio) doing what the component does: HGETALL / XADD
  gRPC             Dapr stub (grpcio, one channel) GetState / PublishEvent
  gRPC (SDK)       official `dapr` DaprClient.get_state / publish_event
  HTTP             keep-alive http.client GET /v1.0/state/.., POST /v1.0/publish/.. (when served)
  gRPC no-op       a bare grpc.aio servicer (own process) answering at once: gRPC transport cost

and prints p50 / p99 / mean per path plus the added latency over the backend.

    .venv/bin/python bench/grpc_bench.py [iterations=2000]

Needs Redis on 127.0.0.1:6379 (docs/operations.md, "Backing servers").
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REDIS = "127.0.0.1:6379"
COMPONENTS = f"""
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: statestore}}
spec:
  type: state.redis
  version: v1
  metadata: [{{name: redisHost, value: "{REDIS}"}}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.redis
  version: v1
  metadata: [{{name: redisHost, value: "{REDIS}"}}]
"""
APP_ID = "bench"
KEY = "bench-key"
VALUE = json.dumps({"order": 42, "items": ["a", "b", "c"], "note": "x" * 200})
TOPIC = "bench-topic"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn: Callable[[], object], n: int, warmup: int = 100) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def summary(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99) - 1], statistics.fmean(ordered)


def start_service(resources: Path, http_port: int, grpc_port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "APP_ID": APP_ID, "DAPR_HTTP_PORT": str(http_port), "DAPR_GRPC_PORT": str(grpc_port)}
    env.pop("DAPR_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "capabilities", "--resources-path", str(resources), "--log-level", "warning"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1.0/healthz/outbound", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("capability service exited during start-up") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("capability service did not become healthy")


def noop_server(port: int) -> None:
    """A bare grpc.aio Dapr servicer answering GetState/PublishEvent at once (transport baseline)."""
    import grpc
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
    from google.protobuf import empty_pb2

    class Noop(dapr_pb2_grpc.DaprServicer):
        async def GetState(self, request: object, context: object) -> state_pb2.GetStateResponse:
            return state_pb2.GetStateResponse(data=VALUE.encode(), etag="1")

        async def PublishEvent(self, request: object, context: object) -> empty_pb2.Empty:
            return empty_pb2.Empty()

    async def serve() -> None:
        server = grpc.aio.server()
        dapr_pb2_grpc.add_DaprServicer_to_server(Noop(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


def main(iterations: int) -> None:
    import grpc
    import redis.asyncio as aioredis
    from dapr.clients import DaprClient
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2, state_pb2

    with tempfile.TemporaryDirectory() as tmp:
        resources = Path(tmp)
        (resources / "components.yaml").write_text(COMPONENTS)
        http_port, grpc_port = free_port(), free_port()
        proc = start_service(resources, http_port, grpc_port)
        try:
            os.environ.update({"DAPR_HTTP_PORT": str(http_port), "DAPR_GRPC_PORT": str(grpc_port)})
            results: dict[str, dict[str, list[float]]] = {"state get": {}, "publish": {}}

            # Backend direct: one asyncio loop kept open, calls made synchronously through it.
            loop = asyncio.new_event_loop()
            host, port = REDIS.split(":")
            client = aioredis.Redis(host=host, port=int(port))
            stored_key = f"{APP_ID}||{KEY}"
            results["state get"]["backend direct"] = timed(
                lambda: loop.run_until_complete(client.hgetall(stored_key)), iterations
            )
            results["publish"]["backend direct"] = timed(
                lambda: loop.run_until_complete(client.xadd(TOPIC, {"data": VALUE}, maxlen=10000)), iterations
            )

            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            stub = dapr_pb2_grpc.DaprStub(channel)
            with DaprClient() as sdk:
                sdk.save_state("statestore", KEY, VALUE)
                get_req = state_pb2.GetStateRequest(store_name="statestore", key=KEY)
                assert stub.GetState(get_req).data == VALUE.encode()
                pub_req = pubsub_pb2.PublishEventRequest(
                    pubsub_name="pubsub",
                    topic=TOPIC,
                    data=VALUE.encode(),
                    data_content_type="application/json",
                )
                results["state get"]["gRPC"] = timed(lambda: stub.GetState(get_req), iterations)
                results["publish"]["gRPC"] = timed(lambda: stub.PublishEvent(pub_req), iterations)
                results["state get"]["gRPC (SDK)"] = timed(
                    lambda: sdk.get_state("statestore", KEY), iterations
                )
                results["publish"]["gRPC (SDK)"] = timed(
                    lambda: sdk.publish_event("pubsub", TOPIC, VALUE, data_content_type="application/json"),
                    iterations,
                )

            noop_port = free_port()
            noop = subprocess.Popen([sys.executable, __file__, "--noop-server", str(noop_port)])
            try:
                noop_channel = grpc.insecure_channel(f"127.0.0.1:{noop_port}")
                grpc.channel_ready_future(noop_channel).result(timeout=10)
                noop_stub = dapr_pb2_grpc.DaprStub(noop_channel)
                results["state get"]["gRPC no-op"] = timed(lambda: noop_stub.GetState(get_req), iterations)
                results["publish"]["gRPC no-op"] = timed(lambda: noop_stub.PublishEvent(pub_req), iterations)
                noop_channel.close()
            finally:
                noop.terminate()
                noop.wait(timeout=10)

            conn = http.client.HTTPConnection("127.0.0.1", http_port)

            def http_call(method: str, path: str, body: bytes | None = None) -> int:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                return resp.status

            assert http_call("GET", f"/v1.0/state/statestore/{KEY}") == 200
            results["state get"]["HTTP"] = timed(
                lambda: http_call("GET", f"/v1.0/state/statestore/{KEY}"), iterations
            )
            if http_call("POST", f"/v1.0/publish/pubsub/{TOPIC}", VALUE.encode()) == 204:
                results["publish"]["HTTP"] = timed(
                    lambda: http_call("POST", f"/v1.0/publish/pubsub/{TOPIC}", VALUE.encode()), iterations
                )
            conn.close()
            channel.close()
            loop.run_until_complete(client.delete(TOPIC))
            loop.run_until_complete(client.aclose())
            loop.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)

    print(f"{iterations} sequential calls each, value {len(VALUE)} bytes, Redis at {REDIS}; microseconds")
    print(f"{'operation':<10} {'path':<15} {'p50':>8} {'p99':>8} {'mean':>8} {'added p50':>10}")
    for op, paths in results.items():
        base = summary(paths["backend direct"])[0]
        for path, samples in paths.items():
            p50, p99, mean = summary(samples)
            added = "" if path == "backend direct" else f"+{p50 - base:.0f}"
            print(f"{op:<10} {path:<15} {p50:>8.0f} {p99:>8.0f} {mean:>8.0f} {added:>10}")
        if "HTTP" not in paths and op == "publish":
            print(f"{op:<10} {'HTTP':<15} (POST /v1.0/publish not served by this build)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--noop-server":
        noop_server(int(sys.argv[2]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
