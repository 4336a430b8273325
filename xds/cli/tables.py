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
    for what, label in (("added", "created"), ("modified", "configured"), ("removed", "deleted")):
        for name in changes.get(what, []):
            lines.append(f"  {name} {label}")
    for name in changes.get("not_found", []):
        lines.append(f"  {name} not found (nothing to delete)")
    lines += [diag_line(d) for d in outcome.get("diagnostics", [])]  # warnings of an accepted change
    return lines


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


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
