"""Snapshot cache: state only. The server (protocol) reads it through a small interface."""

from xds.cache.cache import NewProxyCallback, SnapshotCache
from xds.cache.snapshot import Resource, Snapshot

__all__ = ["NewProxyCallback", "Resource", "Snapshot", "SnapshotCache"]
