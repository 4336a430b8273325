"""Pure translation: MeshConfig + ProxyIdentity -> serialized Envoy resources -> Snapshots."""

from xds.translate.builder import SnapshotBuilder
from xds.translate.decode import resource_to_dict

__all__ = ["SnapshotBuilder", "resource_to_dict"]
