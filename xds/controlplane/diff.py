"""Per-proxy difference between two snapshots: resource names added / modified / removed, per xDS type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xds import types
from xds.cache.snapshot import Snapshot


def snapshot_diff(old: Snapshot | None, new: Snapshot | None) -> dict[str, dict[str, list[str]]]:
    """{"CDS": {"added": [...], "modified": [...], "removed": [...]}, ...}; types without changes omitted."""
    out: dict[str, dict[str, list[str]]] = {}
    for type_url in types.TYPE_ORDER:
        before = old.of(type_url) if old else {}
        after = new.of(type_url) if new else {}
        added = sorted(n for n in after if n not in before)
        removed = sorted(n for n in before if n not in after)
        modified = sorted(n for n in after if n in before and after[n].version != before[n].version)
        if added or removed or modified:
            out[types.short_name(type_url)] = {"added": added, "modified": modified, "removed": removed}
    return out


def diff_all(current: Mapping[str, Snapshot], proposed: Mapping[str, Snapshot]) -> dict[str, dict[str, Any]]:
    """Diff for every proxy in either map (a proxy absent on one side diffs against nothing)."""
    return {pid: snapshot_diff(current.get(pid), proposed.get(pid)) for pid in sorted({*current, *proposed})}
