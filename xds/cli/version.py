"""`mecha version`: this client's version and, when one is found, the running control plane's state."""

from __future__ import annotations

import argparse
import json
import platform
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from xds.cli.client import default_server

DISTRIBUTION = "mecha-bridge"  # pyproject.toml [project] name


def client_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree without an install
        return "unknown (not installed)"


AddServer = Callable[[argparse.ArgumentParser], None]


def add_parser(sub: argparse._SubParsersAction, add_server: AddServer) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("version", help="client version, and the control plane's state when one is found")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    p.add_argument("--short", action="store_true", help="print only the client version")
    add_server(p)


def _control_plane(server: str) -> dict[str, object]:
    """GET /readyz (open, no token): ready or starting, config version, xDS port; else why not."""
    try:
        with urllib.request.urlopen(server.rstrip("/") + "/readyz", timeout=2) as resp:
            return {"server": server, **json.loads(resp.read() or b"{}")}
    except urllib.error.HTTPError as exc:  # 503 while starting still carries a JSON status
        try:
            return {"server": server, **json.loads(exc.read() or b"{}")}
        except ValueError:
            return {"server": server, "status": f"HTTP {exc.code}"}
    except (OSError, ValueError) as exc:
        return {"server": server, "status": "unreachable", "reason": str(getattr(exc, "reason", exc))}


def cmd_version(args: argparse.Namespace) -> int:
    mine = client_version()
    if args.short:
        print(mine)
        return 0
    server = _control_plane(args.server or default_server())
    if args.output == "json":
        print(json.dumps({"client": {"version": mine, "python": platform.python_version()},
                          "control_plane": server}, indent=2, sort_keys=True))  # fmt: skip
        return 0
    print(f"client version: {mine} (Python {platform.python_version()})")
    status = server.get("status")
    if status == "unreachable":
        print(f"control plane: none at {server['server']} ({server.get('reason')})")
    else:
        extra = f", config version {server['version']}" if "version" in server else ""
        print(f"control plane: {server['server']} {status}{extra}")
    return 0
