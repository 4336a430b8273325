"""What tests' in-process OTLP receivers keep of an ExportTraceServiceRequest (OTLP/gRPC or OTLP/HTTP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Span:
    service: str  # the resource's service.name
    name: str
    kind: int  # OTLP SpanKind: 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER
    trace_id: str  # hex
    span_id: str
    parent_id: str  # "" for a root span


def spans_of(request: Any) -> list[Span]:
    """Every span of an opentelemetry.proto ExportTraceServiceRequest, with its resource's service.name."""
    out = []
    for rs in request.resource_spans:
        attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    Span(
                        attrs.get("service.name", ""),
                        s.name,
                        s.kind,
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                    )
                )
    return out
