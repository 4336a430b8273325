"""Per-proxy difference between two snapshots, per xDS type: resource names added / modified / removed and,
for each of them, a unified diff of the resource rendered as YAML (what `mecha diff` shows)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import yaml

from xds import types
from xds.cache.snapshot import Resource, Snapshot

CHANGES = ("added", "modified", "removed")


def resource_yaml(resource: Resource) -> str:
    """The resource as Envoy's own YAML would spell it (snake_case fields); bytes we cannot decode are shown
    as their size and hash, so a diff never fails because of one resource."""
    from xds.translate.decode import resource_to_dict

    try:
        body = resource_to_dict(resource.type_url, resource.body, snake_case=True)
    except Exception:  # betterproto raises several types on bytes that are not the message
        short = types.short_name(resource.type_url)
        return f"# {len(resource.body)} bytes that do not decode as {short}, hash {resource.version}\n"
    return yaml.safe_dump(body, sort_keys=True, default_flow_style=False, width=100)


def content_diff(short: str, name: str, before: Resource | None, after: Resource | None,
                 rendered: dict[str, str]) -> str:  # fmt: skip
    """Unified diff of one resource (empty side for an added or removed one). rendered caches the YAML of
    each resource version: the same resource is shared by many proxies."""

    def text(resource: Resource | None) -> list[str]:
        if resource is None:
            return []
        key = f"{resource.type_url}|{resource.version}"
        if key not in rendered:
            rendered[key] = resource_yaml(resource)
        return rendered[key].splitlines(keepends=True)

    diff_key = f"diff|{short}|{name}|{before.version if before else ''}|{after.version if after else ''}"
    if diff_key in rendered:  # the same change for many proxies: diffed once
        return rendered[diff_key]
    lines = difflib.unified_diff(
        text(before),
        text(after),
        fromfile=f"{short}/{name}" if before is not None else "/dev/null",
        tofile=f"{short}/{name}" if after is not None else "/dev/null",
    )
    rendered[diff_key] = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return rendered[diff_key]


def snapshot_diff(
    old: Snapshot | None,
    new: Snapshot | None,
    with_content: bool = False,
    rendered: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """{"CDS": {"added": [...], "modified": [...], "removed": [...]}, ...}; types without changes omitted.
    with_content adds "content": {name: unified diff} for every name listed."""
    out: dict[str, dict[str, Any]] = {}
    cache = {} if rendered is None else rendered
    for type_url in types.TYPE_ORDER:
        before = old.of(type_url) if old else {}
        after = new.of(type_url) if new else {}
        added = sorted(n for n in after if n not in before)
        removed = sorted(n for n in before if n not in after)
        modified = sorted(n for n in after if n in before and after[n].version != before[n].version)
        if not (added or removed or modified):
            continue
        short = types.short_name(type_url)
        entry: dict[str, Any] = {"added": added, "modified": modified, "removed": removed}
        if with_content:
            entry["content"] = {
                n: content_diff(short, n, before.get(n), after.get(n), cache)
                for n in (*added, *modified, *removed)
            }
        out[short] = entry
    return out


def diff_all(
    current: Mapping[str, Snapshot], proposed: Mapping[str, Snapshot], with_content: bool = False
) -> dict[str, dict[str, Any]]:
    """Diff for every proxy in either map (a proxy absent on one side diffs against nothing)."""
    rendered: dict[str, str] = {}
    return {
        pid: snapshot_diff(current.get(pid), proposed.get(pid), with_content, rendered)
        for pid in sorted({*current, *proposed})
    }
