"""Dapr tracing: spans for the Dapr APIs (HTTP and gRPC), pub/sub publish and delivery, exported over OTLP.

Configured as daprd is, from the Configuration document's `spec.tracing` (`samplingRate` "0".."1",
`otel.endpointAddress`, `otel.isSecure`, `otel.protocol`). The Configuration used is the one named by
DAPR_CONFIG (daprd's --config) or, without it, the only one that has `spec.tracing`. W3C `traceparent` /
`tracestate` come in on the request (Envoy's Dapr listener adds its own span), and go out in the CloudEvent
and on the delivery to the subscriber, so one trace spans the whole path. With no tracing configured every
call is a no-op: no provider, no exporter, no span objects.

gRPC carries the context as `traceparent`/`tracestate` metadata, in on the API calls and out on delivery.
`otel.protocol` is `grpc` (OTLP/gRPC) or `http` (OTLP/HTTP, protobuf, POST to /v1/traces). Node mode: each
app hosted in the process has its own TracerProvider, so its spans carry its own `service.name`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
ENV_CONFIG = "DAPR_CONFIG"  # daprd's --config: which Configuration this app uses
EXPORT_DELAY_MS = 200  # batch span export delay: spans reach the collector within a fraction of a second
PROTOCOLS = ("grpc", "http")
OTLP_HTTP_PATH = "/v1/traces"  # the OTLP/HTTP traces path (daprd's otlptracehttp default)


class TracingConfigError(ValueError):
    """A Configuration's spec.tracing that cannot be used; the message names the field."""


@dataclass(frozen=True)
class TraceSettings:
    sampling_rate: float
    endpoint: str
    secure: bool
    protocol: str

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> TraceSettings | None:
        """None when the document does not trace (no otel endpoint or samplingRate 0)."""
        where = f"Configuration {name}: spec.tracing"
        raw_rate = spec.get("samplingRate", "")
        try:
            rate = float(raw_rate) if raw_rate not in ("", None) else 0.0
        except (TypeError, ValueError):
            raise TracingConfigError(f"{where}.samplingRate: {raw_rate!r} is not a number 0-1") from None
        if not 0.0 <= rate <= 1.0:
            raise TracingConfigError(f"{where}.samplingRate: {raw_rate!r} is not between 0 and 1")
        otel = spec.get("otel") or {}
        if not isinstance(otel, Mapping):
            raise TracingConfigError(f"{where}.otel: expected a map")
        endpoint = str(otel.get("endpointAddress") or "")
        protocol = str(otel.get("protocol") or "grpc").lower()
        if protocol not in PROTOCOLS:
            raise TracingConfigError(
                f"{where}.otel.protocol: {protocol!r}: expected grpc (OTLP/gRPC) or http (OTLP/HTTP)"
            )
        secure = otel.get("isSecure", False)
        if isinstance(secure, str):
            secure = secure.strip().lower() == "true"
        if rate == 0.0 or not endpoint:
            return None
        return cls(rate, endpoint, bool(secure), protocol)


def pick_settings(configurations: list[dict[str, Any]], wanted: str = "") -> TraceSettings | None:
    """The trace settings of the app's Configuration (DAPR_CONFIG, else the only one with spec.tracing)."""
    named = {str((d.get("metadata") or {}).get("name", "")): d for d in configurations if isinstance(d, dict)}
    if wanted:
        doc = named.get(wanted)
    else:
        tracing = [
            n for n, d in sorted(named.items()) if isinstance((d.get("spec") or {}).get("tracing"), dict)
        ]
        if len(tracing) > 1:
            log.warning(
                "Configurations %s all set spec.tracing: using %s (set %s)", tracing, tracing[0], ENV_CONFIG
            )
        doc = named.get(tracing[0]) if tracing else None
    if doc is None:
        return None
    spec = (doc.get("spec") or {}).get("tracing")
    if not isinstance(spec, dict):
        return None
    return TraceSettings.from_spec(str((doc.get("metadata") or {}).get("name", "")), spec)


def otlp_http_url(endpoint: str, secure: bool) -> str:
    """endpointAddress as daprd takes it (host:port, or a URL): the URL OTLP/HTTP spans are POSTed to."""
    if "://" not in endpoint:
        endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    scheme, _, rest = endpoint.partition("://")
    return endpoint if "/" in rest.strip("/") else f"{scheme}://{rest.rstrip('/')}{OTLP_HTTP_PATH}"


def _exporter(settings: TraceSettings) -> Any:
    if settings.protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(endpoint=otlp_http_url(settings.endpoint, settings.secure))
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.endpoint, insecure=not settings.secure)


@dataclass
class _AppTracer:
    settings: TraceSettings
    provider: Any
    tracer: Any


class Tracing:
    """The tracers of the apps this process hosts (one in sidecar mode, several in node mode), each with its
    own TracerProvider (its resource's service.name is the app id); reconfigured when the Configuration
    documents change. `app` names the app a span belongs to; "" = the only app traced."""

    def __init__(self) -> None:
        self._apps: dict[str, _AppTracer] = {}

    @property
    def enabled(self) -> bool:
        """Some app of this process traces."""
        return bool(self._apps)

    def enabled_for(self, app: str) -> bool:
        return self._tracer(app) is not None

    def settings_of(self, app: str) -> TraceSettings | None:
        current = self._apps.get(app)
        return current.settings if current is not None else None

    def _tracer(self, app: str) -> Any:
        current = self._apps.get(app)
        if current is None and not app and len(self._apps) == 1:
            current = next(iter(self._apps.values()))
        return current.tracer if current is not None else None

    def configure(self, configurations: list[dict[str, Any]], service_name: str) -> None:
        """(Re)configure the tracer of the app `service_name` (its app id) from the Configurations."""
        try:
            settings = pick_settings(configurations, os.environ.get(ENV_CONFIG, ""))
        except TracingConfigError as exc:
            log.error("%s: tracing is off", exc)
            settings = None
        if settings == self.settings_of(service_name):
            return
        self.shutdown(service_name)
        if settings is None:
            return
        # imported only when tracing is on: the SDK and exporters cost ~100 ms to import
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sampling_rate)),
        )
        provider.add_span_processor(
            BatchSpanProcessor(_exporter(settings), schedule_delay_millis=EXPORT_DELAY_MS)
        )
        self._apps[service_name] = _AppTracer(settings, provider, provider.get_tracer("mecha.capabilities"))
        log.info(
            "tracing %s: OTLP/%s to %s, sampling %s",
            service_name, settings.protocol, settings.endpoint, settings.sampling_rate,
        )  # fmt: skip

    def shutdown(self, app: str | None = None) -> None:
        """Flush and drop the tracer of `app` (every app when None)."""
        for name in list(self._apps) if app is None else [app]:
            current = self._apps.pop(name, None)
            if current is not None:
                current.provider.shutdown()  # flushes what is queued

    @contextmanager
    def span(
        self,
        name: str,
        kind: str,
        carrier: Mapping[str, str] | None = None,
        *,
        app: str = "",
        **attributes: str,
    ) -> Iterator[dict[str, str]]:
        """A span named `name` (kind SERVER/CLIENT/PRODUCER/CONSUMER) of the app `app`, child of the trace in
        `carrier` (traceparent/tracestate) or of the current span; yields the headers that continue it."""
        tracer = self._tracer(app)
        if tracer is None:
            yield {k: v for k, v in (carrier or {}).items() if k in ("traceparent", "tracestate") and v}
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        propagator = TraceContextTextMapPropagator()
        parent = propagator.extract(dict(carrier)) if carrier and carrier.get("traceparent") else None
        with tracer.start_as_current_span(
            name, context=parent, kind=SpanKind[kind], attributes=attributes, record_exception=True
        ) as span:
            headers: dict[str, str] = {}
            propagator.inject(headers)
            try:
                yield headers
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise


TRACING = Tracing()


def trace_carrier(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: headers[k] for k in ("traceparent", "tracestate") if headers.get(k)}


def grpc_trace_carrier(metadata: Any) -> dict[str, str]:
    """traceparent/tracestate from gRPC invocation metadata. (`grpc-trace-bin`, OpenCensus' binary header,
    never reaches a grpcio servicer: gRPC core keeps that key to itself, so it cannot be read here.)"""
    out: dict[str, str] = {}
    for key, value in metadata or ():
        key = key.lower()
        if key in ("traceparent", "tracestate") and isinstance(value, str):
            out.setdefault(key, value)
    return out


def grpc_trace_metadata(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The trace context daprd sends a gRPC app with a call: traceparent and tracestate metadata."""
    return tuple((k, headers[k]) for k in ("traceparent", "tracestate") if headers.get(k))


def has_current_span() -> bool:
    if not TRACING.enabled:
        return False
    from opentelemetry import trace

    return bool(trace.get_current_span().get_span_context().is_valid)


async def traced_http(request: Any, handler: Any, app: str = "") -> Any:
    """One SERVER span per Dapr HTTP API call (state, pub/sub, invoke fallback...), child of the caller's
    traceparent (Envoy's Dapr listener span); 5xx answers mark the span as an error."""
    resource = getattr(request.match_info.route, "resource", None)
    route = resource.canonical if resource is not None else request.path
    with TRACING.span(f"{request.method} {route}", "SERVER", trace_carrier(request.headers), app=app):
        response = await handler(request)
        if response.status >= 500:
            from opentelemetry import trace
            from opentelemetry.trace import Status, StatusCode

            trace.get_current_span().set_status(Status(StatusCode.ERROR, f"HTTP {response.status}"))
        return response
