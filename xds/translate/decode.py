"""Decode a serialized Resource back to proto3 JSON (for `mecha diff`, golden files and tests)."""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

import xds.translate.pack  # noqa: F401 - cached validators for parse()/to_dict()
from xds import types

MESSAGE_BY_TYPE: dict[str, Any] = {
    types.CLUSTER: Cluster,
    types.ENDPOINT: ClusterLoadAssignment,
    types.LISTENER: Listener,
    types.ROUTE: RouteConfiguration,
}


def resource_to_dict(type_url: str, body: bytes) -> dict[str, Any]:
    cls = MESSAGE_BY_TYPE.get(type_url)
    if cls is None:
        raise ValueError(f"cannot decode {type_url}")
    result: dict[str, Any] = cls.parse(body).to_dict()
    return result
