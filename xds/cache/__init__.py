"""Snapshot cache: state only. The server (protocol) reads it through a small interface."""

from xds.cache.snapshot import Resource, Snapshot

__all__ = ["Resource", "Snapshot"]
