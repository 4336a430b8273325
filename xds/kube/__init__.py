"""Kubernetes' own objects (Service, EndpointSlice, Endpoints, Pod from `kubectl get -o yaml`) -> the mesh's
service registry, the way istiod builds it from a cluster: each Service becomes a MESH_INTERNAL ServiceEntry
whose endpoints carry their Pod's labels."""

from xds.kube.address_map import AddressMap, AddressMapError
from xds.kube.protocol import convert_protocol
from xds.kube.registry import KUBE_REGISTRY_KINDS, is_registry_document, registry_documents

__all__ = [
    "KUBE_REGISTRY_KINDS",
    "AddressMap",
    "AddressMapError",
    "convert_protocol",
    "is_registry_document",
    "registry_documents",
]
