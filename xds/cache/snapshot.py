"""Immutable, pre-serialized snapshots: the only thing the xDS server ever sees of the config.

Every resource is serialized once per change (the translator memoizes packing) and the same Resource
object, bytes included, is shared by every proxy and every stream that receives it. Resource, Snapshot and
Layered are defined in xds.types (the translator builds them without importing the cache) and re-exported
here; what is the cache's own is comparing two snapshots' mappings.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from xds.types import Layered, Resource, Snapshot
from xds.types import type_version as _type_version

__all__ = ["Layered", "Resource", "Snapshot", "_type_version", "changed_names"]

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
