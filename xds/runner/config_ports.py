"""`mecha up --config DIR --port-offset N`: the ports of the user's own config that the offset did not shift.

The offset moves every port `mecha up` binds (control plane, apps, Envoys, capability services, gateway).
The user's folder is theirs and is not rewritten, so a port written there that is one of those listeners at
its default (a WorkloadEntry at a proxy's inbound listener, a Component at a Dapr port) now names the wrong
port. Each one is reported with its file, document, field and where that listener moved to. Ports that are
none of `mecha up`'s (a service port, a backend's 6379) are not the offset's to move and are not reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xds.runner.listeners import up_listener_ports

# a port in text: "127.0.0.1:15300", "http://localhost:9081/x", "[::1]:3500" (the ":" follows a host)
_PORT_IN_TEXT = re.compile(r"(?<=[\w.\]]):(\d{1,5})(?!\d)")


def moved_ports(mode: str, offset: int) -> dict[int, tuple[str, int]]:
    """Default port -> (its label, the port it is under this offset)."""
    shifted = up_listener_ports(mode, offset)
    return {port: (label, shifted[label]) for label, port in up_listener_ports(mode, 0).items()}


def _ports_in(node: Any, path: str) -> Iterator[tuple[str, int]]:
    """(field path, port) of every number, all-digit string and host:port in a YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _ports_in(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _ports_in(value, f"{path}[{i}]")
    elif isinstance(node, int) and not isinstance(node, bool):
        yield path, node
    elif isinstance(node, str):
        if node.isdigit() and len(node) <= 5:
            yield path, int(node)
        else:
            for match in _PORT_IN_TEXT.finditer(node):
                yield path, int(match[1])


def unshifted_ports(folders: list[Path], mode: str, offset: int) -> list[str]:
    """One line per port in the folders' documents that is a default `mecha up` port the offset moved."""
    if offset == 0 or not folders:
        return []
    from xds.sources.loader import load_paths  # the control plane's own reader (same files, same order)

    moved = moved_ports(mode, offset)
    docs, _problems = load_paths(folders)  # refusals are the control plane's to report, at start
    lines = []
    for doc in docs:
        for field, port in _ports_in(doc.body, ""):
            if port in moved:
                label, now = moved[port]
                lines.append(
                    f"--port-offset {offset} did not shift port {port} in your config: {doc.location} field "
                    f"{field}: {label} is on {now} now (mecha up does not rewrite your files)"
                )
    return lines
