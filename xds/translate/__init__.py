"""Pure translation: MeshConfig + ProxyIdentity -> serialized Envoy resources -> Snapshots."""

from xds.translate.builder import SnapshotBuilder
from xds.translate.decode import resource_to_dict
from xds.translate.naive import build_naive

__all__ = ["SnapshotBuilder", "build_naive", "resource_to_dict"]
