"""Explain why a proxy is not serving: ask its Envoy admin API whether the xDS stream is up."""

from __future__ import annotations

import aiohttp

CONNECTED_STAT = "control_plane.connected_state"


async def xds_connected(admin: str) -> bool | None:
    """Envoy's own view of its ADS stream (admin HOST:PORT): True/False, None when admin does not answer."""
    url = f"http://{admin}/stats?filter=^{CONNECTED_STAT}$"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            async with session.get(url) as resp:
                text = await resp.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == CONNECTED_STAT:
            return value.strip() == "1"
    return None


async def explain_proxy(proxy_id: str, admin: str, xds: str) -> str:
    """One sentence saying where a proxy that is not SYNCED is stuck, and what to do."""
    state = await xds_connected(admin)
    if state is None:
        return f"{proxy_id}: Envoy admin {admin} does not answer (did Envoy start? see its log)"
    if not state:
        return (
            f"{proxy_id}: Envoy is running but not connected to the control plane at {xds}; it keeps "
            "retrying about every second and serves its last config meanwhile. Start the control plane "
            "(`mecha serve` / `mecha up`) or fix the xDS address in the bootstrap."
        )
    return (
        f"{proxy_id}: connected to the control plane at {xds} but not SYNCED; "
        "see `mecha proxy-status` (a NACK prints Envoy's message)"
    )
