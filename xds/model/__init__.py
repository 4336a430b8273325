"""The IR: frozen dataclasses (no Envoy imports), the schema that checks documents, and MeshConfig.

Names load lazily (PEP 562): every module importing xds.model.<part> runs this file first, and an eager
import of mesh here would pull the whole model (and the Gateway API conversion mesh stages) into each of
them, the Gateway API modules that mesh itself imports included."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.model.fields import honoured_fields
    from xds.model.mesh import MeshConfig, ModelResult, build_mesh
    from xds.model.meta import CarriedResource, Meta
    from xds.model.resources import (
        Component,
        ConnectionPool,
        Delegate,
        DestinationRule,
        HTTPMatch,
        HTTPRoute,
        OutlierDetection,
        Resiliency,
        Retry,
        Service,
        ServiceEntry,
        ServicePort,
        Subscription,
        Subset,
        TrafficPolicy,
        VirtualService,
        WorkloadEndpoint,
        WorkloadEntry,
    )
    from xds.model.traffic import Destination, RouteDestination, StringMatch

_HOMES = {
    "CarriedResource": "xds.model.meta",
    "Component": "xds.model.resources",
    "ConnectionPool": "xds.model.resources",
    "Delegate": "xds.model.resources",
    "Destination": "xds.model.traffic",
    "DestinationRule": "xds.model.resources",
    "HTTPMatch": "xds.model.resources",
    "HTTPRoute": "xds.model.resources",
    "MeshConfig": "xds.model.mesh",
    "Meta": "xds.model.meta",
    "ModelResult": "xds.model.mesh",
    "OutlierDetection": "xds.model.resources",
    "Resiliency": "xds.model.resources",
    "Retry": "xds.model.resources",
    "RouteDestination": "xds.model.traffic",
    "Service": "xds.model.resources",
    "ServiceEntry": "xds.model.resources",
    "ServicePort": "xds.model.resources",
    "StringMatch": "xds.model.traffic",
    "Subscription": "xds.model.resources",
    "Subset": "xds.model.resources",
    "TrafficPolicy": "xds.model.resources",
    "VirtualService": "xds.model.resources",
    "WorkloadEndpoint": "xds.model.resources",
    "WorkloadEntry": "xds.model.resources",
    "build_mesh": "xds.model.mesh",
    "honoured_fields": "xds.model.fields",
}

__all__ = [
    "CarriedResource",
    "Component",
    "ConnectionPool",
    "Delegate",
    "Destination",
    "DestinationRule",
    "HTTPMatch",
    "HTTPRoute",
    "MeshConfig",
    "Meta",
    "ModelResult",
    "OutlierDetection",
    "Resiliency",
    "Retry",
    "RouteDestination",
    "Service",
    "ServiceEntry",
    "ServicePort",
    "StringMatch",
    "Subscription",
    "Subset",
    "TrafficPolicy",
    "VirtualService",
    "WorkloadEndpoint",
    "WorkloadEntry",
    "build_mesh",
    "honoured_fields",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
