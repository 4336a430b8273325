"""Dry-run diffs compare resource versions per type and name."""

from __future__ import annotations

from xds import types
from xds.cache.snapshot import Resource, Snapshot
from xds.controlplane.diff import diff_all, snapshot_diff


def snap(**clusters: bytes) -> Snapshot:
    return Snapshot.build(Resource.make(types.CLUSTER, name, body) for name, body in clusters.items())


def test_added_modified_removed_by_name() -> None:
    old = snap(a=b"1", b=b"2", c=b"3")
    new = snap(a=b"1", b=b"22", d=b"4")
    assert snapshot_diff(old, new) == {"CDS": {"added": ["d"], "modified": ["b"], "removed": ["c"]}}
    assert snapshot_diff(old, old) == {}


def test_proxy_missing_on_one_side() -> None:
    out = diff_all({"p1": snap(a=b"1")}, {"p2": snap(b=b"1")})
    assert out["p1"] == {"CDS": {"added": [], "modified": [], "removed": ["a"]}}
    assert out["p2"] == {"CDS": {"added": ["b"], "modified": [], "removed": []}}
