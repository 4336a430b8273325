"""Immutable, pre-serialized snapshots: the only thing the xDS server ever sees of the config.

Every resource is serialized once per change (the translator memoizes packing) and the same Resource
object, bytes included, is shared by every proxy and every stream that receives it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from xds import types


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakref: the server's wire-piece cache
class Resource:
    """One Envoy resource, already serialized: body is the protobuf bytes of the message (the Any.value)."""

    type_url: str
    name: str
    body: bytes
    version: str = ""  # content hash; filled in by make() when empty

    @classmethod
    def make(cls, type_url: str, name: str, body: bytes) -> Resource:
        return cls(type_url, name, body, hashlib.blake2b(body, digest_size=8).hexdigest())


def _type_version(resources: Mapping[str, Resource]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(resources):
        h.update(name.encode())
        h.update(b"\0")
        h.update(resources[name].version.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """All resources of one proxy, by type URL then name, with a content-derived version per type.

    changed_at is the time.monotonic() of the config change that produced it (for convergence metrics).
    """

    resources: Mapping[str, Mapping[str, Resource]]
    versions: Mapping[str, str]
    changed_at: float = 0.0
    config_version: str = ""  # version of the accepted config set this came from (for status/CLI)

    @classmethod
    def build(
        cls,
        resources: Iterable[Resource],
        changed_at: float = 0.0,
        config_version: str = "",
    ) -> Snapshot:
        by_type: dict[str, dict[str, Resource]] = {t: {} for t in types.TYPE_ORDER}
        for r in resources:
            bucket = by_type.setdefault(r.type_url, {})
            if r.name in bucket:
                raise ValueError(f"duplicate {types.short_name(r.type_url)} resource name {r.name!r}")
            bucket[r.name] = r
        frozen = {t: MappingProxyType(v) for t, v in by_type.items()}
        versions = {t: _type_version(v) for t, v in by_type.items()}
        return cls(MappingProxyType(frozen), MappingProxyType(versions), changed_at, config_version)

    def of(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, MappingProxyType({}))

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, "")
