"""xDS gRPC server (protocol): pure per-stream states, wire codec, debounce/throttle, grpc.aio server."""

from xds.server.push import Debouncer, PushThrottle
from xds.server.server import XdsServer
from xds.server.state import SyncState, TypeStatus
from xds.server.status import ProxyStatus

__all__ = ["Debouncer", "ProxyStatus", "PushThrottle", "SyncState", "TypeStatus", "XdsServer"]
