"""Re-reading Istio's plug-in CA files while the control plane runs (root rotation without a restart).

The files are polled (every MECHA_CA_RELOAD_S seconds, 5 by default): a Kubernetes Secret volume swaps them
with one rename, and a poll of four small files costs nothing. Files that fail the checks are logged naming
the file and the CA keeps signing with what it had.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the agent reads reload_interval() only: no CA on its start path
    from xds.ca.authority import CertificateAuthority

log = logging.getLogger("mecha.ca")
ENV_RELOAD_S = "MECHA_CA_RELOAD_S"
DEFAULT_RELOAD_S = 5.0


def reload_interval() -> float:
    raw = os.environ.get(ENV_RELOAD_S, "").strip()
    if not raw:
        return DEFAULT_RELOAD_S
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_RELOAD_S}={raw!r}: expected a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{ENV_RELOAD_S}={raw!r}: must be positive")
    return seconds


def reload_once(ca: CertificateAuthority, on_change: Callable[[], None] | None = None) -> bool:
    """One check of the files: True when the CA now signs with (or trusts) what they hold."""
    try:
        changed = ca.reload()
    except ValueError as exc:
        log.error("plug-in CA files not reloaded (still signing with the previous ones): %s", exc)
        return False
    if changed:
        roots = ca.root_pem.count(b"-----BEGIN CERTIFICATE-----")
        log.warning("plug-in CA files reloaded from %s: signing as %s, trust bundle of %d root(s)",
                    ca.plugin_dir, ca.root.subject.rfc4514_string(), roots)  # fmt: skip
        if on_change is not None:
            on_change()
    return changed


async def watch_plugin_ca(
    ca: CertificateAuthority, interval: float, on_change: Callable[[], None] | None = None
) -> None:
    """Forever (cancel to stop); returns at once for a CA that is not a plug-in CA."""
    if ca.plugin_dir is None:
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(reload_once, ca, on_change)
