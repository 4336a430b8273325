"""xDS gRPC server (protocol): pure per-stream states, wire codec, debounce/throttle, grpc.aio server.

Names load lazily: the agent uses the pure states and the codec (xds.server.sotw, delta, codec, services) on
a sidecar's start path and must not import the server, its metrics and caches with them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.server.push import Debouncer, PushThrottle
    from xds.server.server import XdsServer
    from xds.server.state import SyncState, TypeStatus
    from xds.server.status import ProxyStatus

_WHERE = {
    "Debouncer": "xds.server.push",
    "PushThrottle": "xds.server.push",
    "XdsServer": "xds.server.server",
    "SyncState": "xds.server.state",
    "TypeStatus": "xds.server.state",
    "ProxyStatus": "xds.server.status",
}
__all__ = ["Debouncer", "ProxyStatus", "PushThrottle", "SyncState", "TypeStatus", "XdsServer"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'xds.server' has no attribute {name!r}")
