"""Dapr documents read once, for both products: the Resiliency model and Dapr's durations; and the
resolved Component (component.py) the capability service builds every backend from.

The capability service (`capabilities/`) runs Resiliency policies around component and app calls; the control
plane (`xds/`) turns the same documents into Envoy route and cluster settings. Both read them here, so a
document means the same thing, with the same defaults and the same refusals, on both sides.

Why under `capabilities/`: the layering rule is that `capabilities/` never imports `xds/` (the capability
service ships and starts without the control plane), while `xds/` may import `capabilities/`. Code both need
must therefore live on the capabilities side. This package imports only the standard library (no runtime,
no YAML, no component registry), so the control plane pays nothing for importing it.
"""

from __future__ import annotations

from capabilities.daprspec.durations import parse_duration
from capabilities.daprspec.errors import SpecError
from capabilities.daprspec.resiliency import (
    TRIP_FORM,
    ActorTarget,
    CircuitBreakerSpec,
    ComponentTarget,
    Policies,
    PolicyNames,
    ResiliencySpec,
    RetrySpec,
    Targets,
    document_source,
    parse_circuit_breaker,
    parse_document,
    parse_resiliency,
    parse_retry,
    trip_threshold,
)

__all__ = [
    "TRIP_FORM",
    "ActorTarget",
    "CircuitBreakerSpec",
    "ComponentTarget",
    "Policies",
    "PolicyNames",
    "ResiliencySpec",
    "RetrySpec",
    "SpecError",
    "Targets",
    "document_source",
    "parse_circuit_breaker",
    "parse_document",
    "parse_duration",
    "parse_resiliency",
    "parse_retry",
    "trip_threshold",
]
