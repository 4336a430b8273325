"""Dapr tracing of a real `python -m capabilities` process, exported to real OTLP receivers run by the test:

- the gRPC API gets a SERVER span per call (child of the caller's `traceparent` metadata), and a
  gRPC publish is delivered to a gRPC subscriber (AppCallback) in the same trace, the app receiving the
  delivery span's context as traceparent metadata;
- `otel.protocol: http` exports over OTLP/HTTP (an aiohttp receiver decoding ExportTraceServiceRequest);
- node mode: each app's spans carry its own service.name.

Receivers and the app are started after the process (gRPC threads in this process and fork() do not mix).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from capability_testkit import server_answers
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc, dapr_pb2_grpc, pubsub_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from sidecar_process import REPO, SidecarProcess, start_sidecar

from xds.testing.envoy import free_port
from xds.testing.otlp import Span, spans_of

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SERVER, PRODUCER, CONSUMER = 2, 4, 5  # OTLP span kinds


class GrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Span] = []

    async def Export(self, request: Any, context: Any) -> Any:  # gRPC method name
        self.spans.extend(spans_of(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class TopicApp(appcallback_pb2_grpc.AppCallbackServicer):
    """A gRPC subscriber: subscribes to orders on `bus`, keeps each event's invocation metadata."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        return appcallback_pb2.ListTopicSubscriptionsResponse(
            subscriptions=[appcallback_pb2.TopicSubscription(pubsub_name="bus", topic="orders")]
        )

    async def OnTopicEvent(self, request: Any, context: Any) -> Any:
        self.received.append({k: v for k, v in context.invocation_metadata()})
        return appcallback_pb2.TopicEventResponse(status=appcallback_pb2.TopicEventResponse.SUCCESS)


def tracing_yaml(endpoint: str, protocol: str) -> str:
    return f"""apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: tracing}}
spec:
  tracing:
    samplingRate: "1"
    otel: {{endpointAddress: "{endpoint}", isSecure: false, protocol: {protocol}}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: bus}}
spec: {{type: pubsub.in-memory, version: v1}}
"""


@pytest.fixture
async def stops() -> AsyncIterator[list[Callable[[], Any]]]:
    """Stop callbacks run at the end (processes, servers), last started first."""
    callbacks: list[Callable[[], Any]] = []
    yield callbacks
    for stop in reversed(callbacks):
        result = stop()
        if asyncio.iscoroutine(result):
            await result


async def wait_for(
    predicate: Callable[[], Any], what: str, sidecar: SidecarProcess, timeout_s: float = 20
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert sidecar.process.poll() is None, f"sidecar exited: {sidecar.log()[-3000:]}"
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {timeout_s}s; sidecar log:\n{sidecar.log()[-3000:]}")


async def test_grpc_publish_and_grpc_delivery_are_one_trace(
    tmp_path: Path, stops: list[Callable[[], Any]]
) -> None:
    otlp_port, app_port = free_port(), free_port()
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "tracing.yaml").write_text(tracing_yaml(f"127.0.0.1:{otlp_port}", "grpc"))
    sidecar = start_sidecar(
        tmp_path, "orders", "--resources-path", str(resources), "--app-port", str(app_port), grpc=True,
        env={"APP_PROTOCOL": "grpc"},
    )  # fmt: skip
    stops.append(sidecar.stop)
    collector, app = GrpcReceiver(), TopicApp()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    server.add_insecure_port(f"127.0.0.1:{otlp_port}")
    app_server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(app, app_server)
    app_server.add_insecure_port(f"127.0.0.1:{app_port}")
    await server.start()
    await app_server.start()
    stops += [lambda: server.stop(None), lambda: app_server.stop(None)]

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    stops.append(channel.close)
    dapr = dapr_pb2_grpc.DaprStub(channel)
    sidecar.wait_until(lambda: sidecar.request("GET", "/v1.0/healthz").status == 204, "ready")

    async def publish(metadata: tuple[tuple[str, Any], ...]) -> None:
        request = pubsub_pb2.PublishEventRequest(
            pubsub_name="bus", topic="orders", data=b'{"n":1}', data_content_type="application/json"
        )
        await dapr.PublishEvent(request, metadata=metadata, timeout=10)

    # the app subscribes once the sidecar reached it: publish until an event arrives
    async def delivered() -> bool:
        await publish((("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),))
        await asyncio.sleep(0.3)
        return bool(app.received)

    deadline = time.monotonic() + 20
    while not await delivered():
        assert time.monotonic() < deadline, f"no gRPC delivery: {sidecar.log()[-3000:]}"
    metadata = app.received[0]
    delivered_traceparent = metadata.get("traceparent", "")
    assert delivered_traceparent.split("-")[1:2] == [CALLER_TRACE], metadata
    consumer_id = delivered_traceparent.split("-")[2]

    def chain() -> list[Span]:
        by_id = {s.span_id: s for s in collector.spans if s.trace_id == CALLER_TRACE}
        out, span_id = [], consumer_id
        while span_id in by_id:
            out.append(by_id[span_id])
            span_id = by_id[span_id].parent_id
        return out if len(out) == 3 else []

    path = await wait_for(chain, "the delivery, publish and API spans reached the collector", sidecar)
    described = [(s.name, s.kind) for s in path]
    assert described == [
        ("pubsub/orders", CONSUMER),
        ("pubsub/orders", PRODUCER),
        ("/dapr.proto.runtime.v1.Dapr/PublishEvent", SERVER),
    ], described
    assert path[-1].parent_id == CALLER_SPAN  # the gRPC API span continues the caller's traceparent
    assert {s.service for s in path} == {"orders"}


async def test_otel_protocol_http_exports_over_otlp_http(
    tmp_path: Path, stops: list[Callable[[], Any]]
) -> None:
    port = free_port()
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "tracing.yaml").write_text(tracing_yaml(f"127.0.0.1:{port}", "http"))
    sidecar = start_sidecar(tmp_path, "checkout", "--resources-path", str(resources))
    stops.append(sidecar.stop)
    received: list[Span] = []
    paths: list[str] = []

    async def export(request: web.Request) -> web.Response:
        paths.append(request.path)
        assert request.content_type == "application/x-protobuf"
        message = trace_service_pb2.ExportTraceServiceRequest.FromString(await request.read())
        received.extend(spans_of(message))
        body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    receiver = web.Application()
    receiver.router.add_post("/v1/traces", export)
    runner = web.AppRunner(receiver)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stops.append(runner.cleanup)
    sidecar.wait_until(lambda: sidecar.request("GET", "/v1.0/healthz").status == 204, "ready")
    answer = sidecar.request(
        "POST", "/v1.0/publish/bus/orders", b'{"n":1}',
        **{"Content-Type": "application/json", "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )  # fmt: skip
    assert answer.status == 204, answer.body

    api = await wait_for(
        lambda: [s for s in received if s.trace_id == CALLER_TRACE and s.kind == SERVER],
        "the API span over OTLP/HTTP",
        sidecar,
    )
    assert api[0].parent_id == CALLER_SPAN and api[0].service == "checkout"
    assert api[0].name.startswith("POST /v1.0/publish"), api[0]
    assert set(paths) == {"/v1/traces"}
    assert "tracing is off" not in sidecar.log()


def start_node(tmp_path: Path, resources: Path, apps: list[str], first_port: int) -> SidecarProcess:
    """One capability service process hosting every --app (node mode)."""
    log_path = tmp_path / "node.log"
    argv = [sys.executable, "-m", "capabilities", "--resources-path", str(resources)]
    for app in apps:
        argv += ["--app", app]
    with log_path.open("wb") as log_file:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(argv, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    return SidecarProcess("node", first_port, 0, process, log_path)


async def test_node_mode_spans_carry_each_apps_service_name(
    tmp_path: Path, stops: list[Callable[[], Any]]
) -> None:
    otlp_port, first, second = free_port(), free_port(), free_port()
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "tracing.yaml").write_text(tracing_yaml(f"127.0.0.1:{otlp_port}", "grpc"))
    node = start_node(tmp_path, resources, [f"cart:{first}:0:", f"shipping:{second}:0:"], first)
    process, log_path = node.process, node.log_path
    stops.append(node.stop)
    collector = GrpcReceiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    server.add_insecure_port(f"127.0.0.1:{otlp_port}")
    await server.start()
    stops.append(lambda: server.stop(None))
    for port in (first, second):
        await wait_for(lambda port=port: server_answers("127.0.0.1", port), f"port {port} listening", node)

    traces = {"cart": ("11" * 16, first), "shipping": ("22" * 16, second)}
    for trace_id, port in traces.values():
        sidecar = SidecarProcess("node", port, 0, process, log_path)
        await wait_for(
            lambda s=sidecar: s.request("GET", "/v1.0/healthz").status == 204, f"app on {port} ready", node
        )
        answer = sidecar.request("GET", "/v1.0/metadata", traceparent=f"00-{trace_id}-{CALLER_SPAN}-01")
        assert answer.status == 200

    def services() -> dict[str, set[str]]:
        found = {t: {s.service for s in collector.spans if s.trace_id == t} for t, _ in traces.values()}
        return found if all(found.values()) else {}

    found = await wait_for(services, "both apps' spans", node)
    assert found == {traces["cart"][0]: {"cart"}, traces["shipping"][0]: {"shipping"}}, found
