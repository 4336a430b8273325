"""Plain-text tables and result printing for the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xds.controlplane.report import change_summary, diag_line


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body]
    return "\n".join(lines)


def outcome_lines(outcome: Mapping[str, Any]) -> list[str]:
    """What an apply/delete did (or why it was refused), one fact per line."""
    lines: list[str] = []
    if not outcome.get("accepted"):
        lines.append("refused: the change was not applied (the previous config keeps serving)")
        lines += [diag_line(d) for d in outcome.get("diagnostics", [])]
        return lines
    changes = outcome.get("changes", {})
    verb = "would apply" if outcome.get("dry_run") else "applied"
    lines.append(f"{verb}: {change_summary(changes)} (config version {outcome.get('version')})")
    diagnostics = outcome.get("diagnostics", [])
    skipped = {_doc_name(d) for d in diagnostics if d.get("code") == "skipped"}  # kept, not translated
    for what, label in (("added", "created"), ("modified", "configured"), ("removed", "deleted")):
        for name in changes.get(what, []):
            lines.append(
                f"  {name} skipped (not a kind Mecha reads)" if name in skipped else f"  {name} {label}"
            )
    for name in changes.get("not_found", []):
        lines.append(f"  {name} not found (nothing to delete)")
    # the change's own warnings; those the config already had are only counted
    lines += [diag_line(d) for d in diagnostics if d.get("code") != "skipped"]
    earlier = int(outcome.get("earlier_warnings") or 0)
    if earlier:
        lines.append(
            f"and {earlier} earlier warning(s) about documents this change did not touch (mecha analyze)"
        )
    return lines


def _doc_name(d: Mapping[str, Any]) -> str:
    """`Kind namespace/name`, as the change lists name documents."""
    return f"{d.get('kind', '')} {d.get('namespace', '')}/{d.get('name', '')}"


def config_warning_lines(warnings: Iterable[Mapping[str, Any]]) -> list[str]:
    """proxy-status: routes that still point at a missing host/subset (503 until it exists), though SYNCED."""
    found = [diag_line(d) for d in warnings]
    if not found:
        return []
    return [f"{len(found)} config warning(s): these routes answer 503 (or are shadowed) until fixed:", *found]


def diff_table(proxies: Mapping[str, Mapping[str, Mapping[str, list[str]]]]) -> str:
    """Per proxy: TYPE CHANGE RESOURCES rows (Envoy resource names)."""
    if not proxies:
        return "no connected proxies: nothing to compare (the config itself compiles)"
    out: list[str] = []
    for proxy, per_type in proxies.items():
        out.append(f"proxy {proxy}:")
        rows = [
            (short, change, name)
            for short, changes in per_type.items()
            for change in ("added", "modified", "removed")
            for name in changes.get(change, [])
        ]
        out.append(_indent(table(("TYPE", "CHANGE", "RESOURCE"), rows)) if rows else "  no Envoy changes")
    return "\n".join(out)


def content_lines(proxies: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """The unified diff of each changed resource (the dry run's "content"), each distinct one once, headed by
    the proxies it applies to (a route change usually reaches many proxies identically)."""
    by_diff: dict[str, list[str]] = {}
    for proxy, per_type in proxies.items():
        for changes in per_type.values():
            for text in (changes.get("content") or {}).values():
                by_diff.setdefault(text, []).append(proxy)
    out: list[str] = []
    for text, owners in by_diff.items():
        out += ["", f"# proxies: {', '.join(sorted(set(owners)))}", text.rstrip("\n")]
    return out


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
