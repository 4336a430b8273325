"""Decode a serialized Resource back to proto3 JSON (for `mecha diff`, golden files and tests)."""

from __future__ import annotations

from typing import Any

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration, ScopedRouteConfiguration

import xds.translate.pack  # noqa: F401 - cached validators for parse()/to_dict()
from xds import types

MESSAGE_BY_TYPE: dict[str, Any] = {
    types.CLUSTER: Cluster,
    types.ENDPOINT: ClusterLoadAssignment,
    types.LISTENER: Listener,
    types.ROUTE: RouteConfiguration,
    types.SCOPED_ROUTE: ScopedRouteConfiguration,
}


def resource_to_dict(type_url: str, body: bytes, *, snake_case: bool = False) -> dict[str, Any]:
    """proto3 JSON (camelCase) by default. snake_case=True gives the field names Envoy's own JSON/YAML
    parser is sure to accept (betterproto2 camel-cases `consecutive_5xx` as `consecutive5Xx`)."""
    cls = MESSAGE_BY_TYPE.get(type_url)
    if cls is None:
        raise ValueError(f"cannot decode {type_url}")
    casing = betterproto2.Casing.SNAKE if snake_case else betterproto2.Casing.CAMEL
    result: dict[str, Any] = _fix_keys(cls.parse(body).to_dict(casing=casing))
    return result


# betterproto2 0.9.1 mis-cases field names with a digit before letters (consecutive_5xx): map them back
# to the protobuf JSON names Envoy accepts.
_KEY_FIXES = {
    "consecutive5Xx": "consecutive5xx",
    "enforcingConsecutive5Xx": "enforcingConsecutive5xx",
    "consecutive_5_xx": "consecutive_5xx",
    "enforcing_consecutive_5_xx": "enforcing_consecutive_5xx",
}


def _fix_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_KEY_FIXES.get(k, k): _fix_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_keys(v) for v in value]
    return value
