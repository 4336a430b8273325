"""Dapr tracing: spans for the Dapr APIs, pub/sub publish and delivery, exported over OTLP/gRPC.

Configured as daprd is, from the Configuration document's `spec.tracing` (`samplingRate` "0".."1",
`otel.endpointAddress`, `otel.isSecure`, `otel.protocol`). The Configuration used is the one named by
DAPR_CONFIG (daprd's --config) or, without it, the only one that has `spec.tracing`. W3C `traceparent` /
`tracestate` come in on the request (Envoy's Dapr listener adds its own span), and go out in the CloudEvent
and on the delivery to the subscriber, so one trace spans the whole path. With no tracing configured every
call is a no-op: no provider, no exporter, no span objects.
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
        if protocol != "grpc":
            raise TracingConfigError(
                f"{where}.otel.protocol: {protocol!r}: only grpc (OTLP/gRPC) is exported"
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


class Tracing:
    """The process's tracer; reconfigured when the Configuration documents change."""

    def __init__(self) -> None:
        self.settings: TraceSettings | None = None
        self._provider: Any = None
        self._tracer: Any = None
        self.service_name = "daprd"

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def configure(self, configurations: list[dict[str, Any]], service_name: str) -> None:
        try:
            settings = pick_settings(configurations, os.environ.get(ENV_CONFIG, ""))
        except TracingConfigError as exc:
            log.error("%s: tracing is off", exc)
            settings = None
        if settings == self.settings and service_name == self.service_name:
            return
        self.shutdown()
        self.settings, self.service_name = settings, service_name
        if settings is None:
            return
        # imported only when tracing is on: the SDK and gRPC exporter cost ~100 ms to import
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sampling_rate)),
        )
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, insecure=not settings.secure)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS))
        self._provider, self._tracer = provider, provider.get_tracer("mecha.capabilities")
        log.info("tracing: OTLP/gRPC to %s, sampling %s", settings.endpoint, settings.sampling_rate)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()  # flushes what is queued
        self._provider = self._tracer = None

    @contextmanager
    def span(
        self, name: str, kind: str, carrier: Mapping[str, str] | None = None, **attributes: str
    ) -> Iterator[dict[str, str]]:
        """A span named `name` (kind SERVER/CLIENT/PRODUCER/CONSUMER), child of the trace in `carrier`
        (traceparent/tracestate) or of the current span; yields the headers that continue it."""
        if self._tracer is None:
            yield {k: v for k, v in (carrier or {}).items() if k in ("traceparent", "tracestate") and v}
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        propagator = TraceContextTextMapPropagator()
        parent = propagator.extract(dict(carrier)) if carrier and carrier.get("traceparent") else None
        with self._tracer.start_as_current_span(
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


def has_current_span() -> bool:
    if not TRACING.enabled:
        return False
    from opentelemetry import trace

    return bool(trace.get_current_span().get_span_context().is_valid)


async def traced_http(request: Any, handler: Any) -> Any:
    """One SERVER span per Dapr HTTP API call (state, pub/sub, invoke fallback...), child of the caller's
    traceparent (Envoy's Dapr listener span); 5xx answers mark the span as an error."""
    resource = getattr(request.match_info.route, "resource", None)
    route = resource.canonical if resource is not None else request.path
    with TRACING.span(f"{request.method} {route}", "SERVER", trace_carrier(request.headers)):
        response = await handler(request)
        if response.status >= 500:
            from opentelemetry import trace
            from opentelemetry.trace import Status, StatusCode

            trace.get_current_span().set_status(Status(StatusCode.ERROR, f"HTTP {response.status}"))
        return response
