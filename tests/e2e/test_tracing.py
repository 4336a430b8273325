"""One trace across the demo: test (app A) -> productpage's Envoy -> reviews' Envoy -> reviews (app B) ->
publish through reviews' Dapr listener (Envoy) -> capability service (API span, publish span) -> delivery span
-> the subscriber, all exported to a real OTLP/gRPC receiver run by this test (opentelemetry-proto + grpcio).

And one across service invocation through the Dapr API: an instrumented app A (the test, with its own
traceparent) -> its Dapr HTTP API (/v1.0/invoke/<app>/method/..., served by A's Envoy) -> B's inbound Envoy
-> app B (the traceparent B receives).

Tracing is configured as Istio and Dapr users write it: the `istio` ConfigMap's extensionProviders, a
mesh-wide Telemetry at 100 %, and a Dapr Configuration's spec.tracing.otel. One stack for the module.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import grpc
import pytest
import pytest_asyncio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from xds.demo.config import make_layout
from xds.runner.stack import Stack, StackOptions
from xds.testing.envoy import free_port
from xds.testing.otlp import Span, spans_of

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """TraceService/Export: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # type: ignore[no-untyped-def]  # gRPC method name
        with self.lock:
            self.spans.extend(spans_of(request))
        return trace_service_pb2.ExportTraceServiceResponse()

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


@pytest.fixture(scope="module")
def receiver(stack: Stack) -> Iterator[tuple[Receiver, int]]:
    """Started after the stack: a gRPC server's threads in this process break the children's fork()."""
    collector = Receiver()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    (stack.config_dir / "tracing.yaml").write_text(tracing_config(port))
    yield collector, port
    server.stop(None)


def tracing_config(port: int) -> str:
    return f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    extensionProviders:
    - name: otel
      opentelemetry: {{service: 127.0.0.1, port: {port}}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  tracing: [{{providers: [{{name: otel}}], randomSamplingPercentage: 100}}]
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: tracing, namespace: default}}
spec:
  tracing:
    samplingRate: "1"
    otel: {{endpointAddress: "127.0.0.1:{port}", isSecure: false, protocol: grpc}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: orders-bus, namespace: default}}
spec: {{type: pubsub.in-memory, version: v1}}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {{name: orders, namespace: default}}
spec: {{pubsubname: orders-bus, topic: orders, routes: {{default: /events/orders}}}}
scopes: [reviews]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp_path = tmp_path_factory.mktemp("tracing")
    layout = make_layout("sidecar", lambda _role="", _index=0: free_port())
    options = StackOptions(
        layout=layout,
        state_dir=tmp_path / "state",
        api_port=free_port(),
        xds_port=free_port(),
        watch_interval=0.2,
        with_capabilities=True,
        with_agents=False,
    )
    running = Stack(options)
    try:
        await running.start(90)
        yield running
    finally:
        await running.stop()


async def _envoy_traces(session: aiohttp.ClientSession, admin_port: int) -> bool:
    async with session.get(f"http://127.0.0.1:{admin_port}/config_dump?resource=dynamic_listeners") as resp:
        return "envoy.tracers.opentelemetry" in await resp.text()


async def _every_envoy_traces(session: aiohttp.ClientSession, stack: Stack) -> None:
    """Every Envoy took the tracing config (a real Envoy accepted it)."""
    deadline = time.monotonic() + 30
    for proxy in stack.o.layout.proxies:
        while not await _envoy_traces(session, proxy.admin_port):
            assert time.monotonic() < deadline, f"{proxy.id}: no OpenTelemetry tracer in its listeners"
            await asyncio.sleep(0.2)


async def test_one_trace_spans_envoys_dapr_publish_and_delivery(
    stack: Stack, receiver: tuple[Receiver, int]
) -> None:
    collector = receiver[0]
    layout = stack.o.layout
    pp = layout.proxy_of("productpage-v1")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await _every_envoy_traces(session, stack)

        # app A: a request into the mesh with no trace context: productpage's Envoy starts the trace
        async with session.get(
            f"http://127.0.0.1:{pp.outbound_port}/reviews", headers={"Host": "reviews"}
        ) as resp:
            assert resp.status == 200
            body = await resp.json()
        inbound_parent = body["headers"]["traceparent"]  # what reviews (app B) received from its Envoy
        trace_id = inbound_parent.split("-")[1]
        reviews = f"reviews-{body['version']}"
        dapr = layout.proxy_of(reviews).dapr_http_port

        # app B continues the trace: publishes with the traceparent it received (through its Dapr listener);
        # retried until its capability service has the Configuration (tracing) and the component
        events: list[dict[str, str]] = []
        deadline = time.monotonic() + 30
        while not events:
            assert time.monotonic() < deadline, "no traced delivery reached the subscriber"
            async with session.post(
                f"http://127.0.0.1:{dapr}/v1.0/publish/orders-bus/orders",
                json={"order": 1},
                headers={"traceparent": inbound_parent},
            ) as resp:
                assert resp.status in (204, 404, 500, 503), await resp.text()
            await asyncio.sleep(0.5)
            app = layout.workload(reviews).app_port
            async with session.get(f"http://127.0.0.1:{app}/events") as resp:
                events = [e for e in (await resp.json())["events"] if trace_id in e.get("traceparent", "")]

    def spans() -> dict[str, Span]:
        return {s.span_id: s for s in collector.snapshot() if s.trace_id == trace_id}

    delivered_span = events[-1]["traceparent"].split("-")[2]  # the subscriber got the delivery span's id
    deadline = time.monotonic() + 15
    while delivered_span not in spans() or len(spans()) < 6:
        assert time.monotonic() < deadline, sorted((s.service, s.name) for s in spans().values())
        await asyncio.sleep(0.3)
    by_id = spans()

    def chain(span_id: str) -> list[Span]:
        out = []
        while span_id in by_id:
            out.append(by_id[span_id])
            span_id = by_id[span_id].parent_id
        return out

    path = chain(delivered_span)
    described = [(s.service, s.name) for s in path]
    # child -> root: delivery, publish, the Dapr API call, reviews' Dapr listener (Envoy), reviews' inbound
    # Envoy, productpage's outbound Envoy (the root: the request carried no context)
    services = [s.service for s in path]
    assert services[:3] == ["reviews", "reviews", "reviews"], described
    assert path[0].name == "pubsub/orders" and path[0].kind == 5, described  # CONSUMER
    assert path[1].name == "pubsub/orders" and path[1].kind == 4, described  # PRODUCER
    assert path[2].name.startswith("POST /v1.0/publish") and path[2].kind == 2, described  # SERVER
    envoy_hops = path[3:]
    assert [s.service for s in envoy_hops] == ["reviews.default", "reviews.default", "productpage.default"]
    # the Dapr listener serves the app's API call (SERVER, like daprd's API span), inbound is SERVER,
    # productpage's outbound listener is the CLIENT
    assert [s.kind for s in envoy_hops] == [2, 2, 3], described
    assert envoy_hops[1].span_id == inbound_parent.split("-")[2]  # reviews got its inbound Envoy's span
    assert envoy_hops[-1].parent_id == "", described  # the root
    assert all(s.trace_id == trace_id for s in path)


async def test_invoke_through_the_dapr_api_continues_the_callers_trace(
    stack: Stack, receiver: tuple[Receiver, int]
) -> None:
    """productpage (app A, instrumented: it sends its own traceparent) invokes reviews (app B) through its
    Dapr HTTP API: the spans of A's Dapr listener and of B's inbound Envoy are in A's trace, each the child
    of the hop before, and B receives its inbound Envoy's span as parent."""
    collector = receiver[0]
    layout = stack.o.layout
    dapr = layout.proxy_of("productpage-v1").dapr_http_port
    trace_id, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await _every_envoy_traces(session, stack)
        async with session.get(
            f"http://127.0.0.1:{dapr}/v1.0/invoke/reviews/method/traced?from=productpage",
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
    assert body["app"] == "reviews" and body["path"] == "/traced?from=productpage", body
    received = body["headers"]["traceparent"].split("-")  # what reviews (app B) got
    assert received[1] == trace_id, received  # the caller's trace, not a new one
    b_parent = received[2]

    def spans() -> dict[str, Span]:
        return {s.span_id: s for s in collector.snapshot() if s.trace_id == trace_id}

    deadline = time.monotonic() + 15
    while b_parent not in spans() or not _reaches(spans(), b_parent, caller_span):
        assert time.monotonic() < deadline, sorted((s.service, s.name, s.parent_id) for s in spans().values())
        await asyncio.sleep(0.3)
    by_id = spans()
    path = []  # B's parent up to the caller's span (not exported: the caller is the test)
    span_id = b_parent
    while span_id != caller_span:
        path.append(by_id[span_id])
        span_id = by_id[span_id].parent_id
    described = [(s.service, s.name, s.kind) for s in path]
    # child -> caller: reviews' inbound Envoy (SERVER), productpage's Dapr listener (SERVER, as daprd's API
    # span for the app's call), whose parent is the caller's own span
    assert [s.service for s in path] == ["reviews.default", "productpage.default"], described
    assert [s.kind for s in path] == [2, 2], described
    assert path[-1].parent_id == caller_span, described
    assert {s.span_id for s in by_id.values() if s.parent_id == ""} == set(), described  # no new root


def _reaches(by_id: dict[str, Span], span_id: str, ancestor: str) -> bool:
    """Whether the parent chain from span_id, through exported spans, reaches ancestor."""
    while span_id in by_id:
        span_id = by_id[span_id].parent_id
        if span_id == ancestor:
            return True
    return False
