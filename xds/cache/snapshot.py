"""Immutable, pre-serialized snapshots: the only thing the xDS server ever sees of the config.

Every resource is serialized once per change (the translator memoizes packing) and the same Resource
object, bytes included, is shared by every proxy and every stream that receives it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

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


class Layered(Mapping[str, Resource]):
    """A shared mapping plus one proxy's own few entries, read-only, without copying the shared one (per
    proxy and per change, copying 1,000 route tables' or 3,000 clusters' entries added up)."""

    __slots__ = ("base", "own")

    def __init__(self, base: Mapping[str, Resource], own: dict[str, Resource]) -> None:
        self.base = base
        self.own = own

    def __getitem__(self, name: str) -> Resource:
        found = self.own.get(name)
        return found if found is not None else self.base[name]

    def get(self, name: str, default: Any = None) -> Any:
        found = self.own.get(name)
        return found if found is not None else self.base.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self.own or name in self.base

    def __iter__(self) -> Iterator[str]:
        yield from self.base
        yield from self.own

    def __len__(self) -> int:
        return len(self.base) + len(self.own)


_CHANGES: OrderedDict[tuple[int, int], tuple[object, object, frozenset[str]]] = OrderedDict()


def changed_names(old: Mapping[str, Resource], new: Mapping[str, Resource]) -> frozenset[str]:
    """Names whose resource differs (added, removed, other version) between two mappings of one type.

    Every stream of a push asks this for the same pair of shared mappings, so the answer is computed once
    and kept for a few pairs; a Layered mapping is compared as shared part (cached) + own entries."""
    if old is new:
        return frozenset()
    if isinstance(old, Layered) and isinstance(new, Layered):
        own = {n for n in old.own.keys() | new.own.keys() if _differs(old.get(n), new.get(n))}
        return changed_names(old.base, new.base) | own
    key = (id(old), id(new))
    found = _CHANGES.get(key)
    if found is not None and found[0] is old and found[1] is new:
        return found[2]
    out = {n for n, r in new.items() if _differs(old.get(n), r)}
    out.update(n for n in old if n not in new)
    result = frozenset(out)
    _CHANGES[key] = (old, new, result)  # holding both keeps the ids from being reused while cached
    while len(_CHANGES) > 16:
        _CHANGES.popitem(last=False)
    return result


def _differs(a: Resource | None, b: Resource | None) -> bool:
    return a is not b and (a is None or b is None or a.version != b.version)
