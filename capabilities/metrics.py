"""Capability-service Prometheus metrics under daprd's own names (pkg/diagnostics: http_monitoring.go,
component_monitoring.go), so Dapr's Grafana dashboards work unchanged.

daprd exposes OpenCensus counters without the `_total` suffix (`dapr_http_server_request_count`); the
families here are written by hand for that reason. The component counters' `namespace` is daprd's
(security.CurrentNamespace: $NAMESPACE, else "default"), the one Settings.namespace reads: an empty value
would drop the label, and a dashboard filtering on namespace="default" would find nothing. Served at GET
/metrics on the Dapr HTTP port (no token, as daprd's metrics port: counts and names, nothing secret).
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

METRICS_PATH = "/metrics"
# daprd's HTTP latency buckets (milliseconds), pkg/diagnostics/utils defaultLatencyDistribution.
LATENCY_BUCKETS_MS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250,
                      300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000)  # fmt: skip

LabelValues = tuple[str, ...]


class ExactCounter:
    """A counter exposed under its exact name (no `_total`), with fixed label names."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name, self.help_text, self.labels = name, help_text, labels
        self._values: dict[LabelValues, float] = defaultdict(float)
        self._lock = threading.Lock()  # gRPC handlers may run on other threads

    def inc(self, *values: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[values] += by

    def value(self, *values: str) -> float:
        return self._values.get(values, 0.0)

    def metric(self) -> Metric:
        family = Metric(self.name, self.help_text, "unknown")  # written as counter by render()
        with self._lock:
            for values, count in self._values.items():
                family.add_sample(self.name, dict(zip(self.labels, values, strict=True)), count)
        return family


http_requests = ExactCounter(
    "dapr_http_server_request_count",
    "Number of HTTP requests started in server.",
    ("app_id", "method", "path", "status"),
)
pubsub_egress = ExactCounter(
    "dapr_component_pubsub_egress_count",
    "The number of outgoing messages published to the pub/sub component.",
    ("app_id", "component", "namespace", "success", "topic"),
)
pubsub_ingress = ExactCounter(
    "dapr_component_pubsub_ingress_count",
    "The number of incoming messages arriving from the pub/sub component.",
    ("app_id", "component", "namespace", "process_status", "status", "topic"),
)
COUNTERS = (http_requests, pubsub_egress, pubsub_ingress)


class _DaprNames:
    def collect(self) -> Iterator[Metric]:
        for counter in COUNTERS:
            yield counter.metric()


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(_DaprNames())


def render() -> bytes:
    text = generate_latest(REGISTRY).decode()
    for counter in COUNTERS:  # prometheus_client would add `_total` to a counter; daprd's have none
        text = text.replace(f"# TYPE {counter.name} untyped\n", f"# TYPE {counter.name} counter\n")
    return text.encode()


def namespace() -> str:
    return os.environ.get("NAMESPACE", "default")


def record_publish(app_id: str, component: str, topic: str, ok: bool) -> None:
    pubsub_egress.inc(app_id, component, namespace(), "true" if ok else "false", topic)


def record_delivery(app_id: str, component: str, topic: str, outcome: str) -> None:
    """outcome: success, retry or drop (daprd's process_status and status carry the same word)."""
    pubsub_ingress.inc(app_id, component, namespace(), outcome, outcome, topic)


def install(app: web.Application) -> None:
    """GET /metrics. The HTTP API middleware counts each response (record_http_response)."""

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get(METRICS_PATH, metrics_handler)


# (app id, method, route resource, status) -> the counter's label values: built once per distinct answer, not
# per response (the route template lookup and str(status) were a measurable part of a state get's own CPU).
_HTTP_LABELS: dict[tuple[str, str, object, int], LabelValues] = {}


def record_http_response(app_id: str, request: web.Request, status: int) -> None:
    """One count per HTTP API response, by route template (bounded cardinality, as daprd's default path
    matching); "" when no route matched. Called by the API middleware once the status is known: an
    on_response_prepare signal would cost a signal dispatch and a coroutine on every response."""
    if request.path == METRICS_PATH:
        return
    resource = getattr(request.match_info.route, "resource", None)
    cache_key = (app_id, request.method, resource, status)
    labels = _HTTP_LABELS.get(cache_key)
    if labels is None:
        path = resource.canonical if resource is not None else ""
        labels = (app_id, request.method, path, str(status))
        if len(_HTTP_LABELS) < 10_000:  # resources are the app's routes; methods and statuses are few
            _HTTP_LABELS[cache_key] = labels
    http_requests.inc(*labels)
