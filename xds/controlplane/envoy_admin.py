"""Read a proxy's live config from its Envoy admin API (what Envoy actually applied, not what we sent).

Through the proxy's agent when it holds an admin relay stream (xds/controlplane/adminrelay.py: the admin stays
on loopback beside Envoy, as in compose and Kubernetes); else from the admin address the proxy announced
(node.metadata.mecha.admin, `mecha up` without agents)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

# section -> (admin path, key of the config_dump entries to keep)
SECTIONS: dict[str, str] = {
    "clusters": "/config_dump?resource=dynamic_active_clusters",
    "listeners": "/config_dump?resource=dynamic_listeners",
    "routes": "/config_dump?resource=dynamic_route_configs",
    "endpoints": "/clusters?format=json",
}


class AdminError(RuntimeError):
    pass


class NoAdminError(AdminError):
    """Neither an agent's relay nor an announced admin address: nothing to read the proxy's admin through."""


def _parsed(where: str, status: int, text: str) -> Any:
    if status != 200:
        raise AdminError(f"Envoy admin {where} answered {status}: {text.strip()[:200]}")
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise AdminError(f"Envoy admin {where} returned invalid JSON: {exc}") from exc


async def admin_get_json(admin: str, path: str, timeout_s: float = 5.0) -> Any:
    url = f"http://{admin}{path}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            async with session.get(url) as resp:
                status, text = resp.status, await resp.text()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise AdminError(f"Envoy admin at {admin} is unreachable: {exc}") from exc
    return _parsed(url, status, text)


async def read_proxy_admin(
    cp: Any, proxy_id: str, admin: str | None, path: str, timeout_s: float = 5.0
) -> Any:
    """GET <path> (JSON) from the proxy's Envoy admin: through its agent's relay when it has one, else at the
    admin address it announced; NoAdminError when neither."""
    from xds.controlplane.adminrelay import RelayError

    relays = getattr(getattr(cp, "identity", None), "admin_relay", None)  # None: --insecure-xds
    if relays is not None and relays.connected(proxy_id):
        try:
            status, text = await relays.get(proxy_id, path, timeout_s)
        except RelayError as exc:
            raise AdminError(str(exc)) from None
        return _parsed(f"{path} (relayed by the agent of {proxy_id!r})", status, text)
    if not admin:
        raise NoAdminError(
            f"proxy {proxy_id!r} has no agent holding an admin relay and did not announce an admin address "
            "(node.metadata.mecha.admin)"
        )
    return await admin_get_json(admin, path, timeout_s)


async def proxy_config(cp: Any, proxy_id: str, admin: str | None, section: str) -> Any:
    if section not in SECTIONS:
        raise KeyError(section)
    return await read_proxy_admin(cp, proxy_id, admin, SECTIONS[section])


def short_rows(section: str, dump: Any) -> list[dict[str, Any]]:
    """A compact view of a config dump (the `-o short` table)."""
    rows: list[dict[str, Any]] = []
    if section == "endpoints":
        for status in dump.get("cluster_statuses", []):
            for host in status.get("host_statuses", []):
                sock = host.get("address", {}).get("socket_address", {})
                health = host.get("health_status", {})
                rows.append(
                    {
                        "cluster": status.get("name", ""),
                        "endpoint": f"{sock.get('address', '')}:{sock.get('port_value', '')}",
                        "health": health.get("eds_health_status", "HEALTHY"),
                    }
                )
        return rows
    for config in dump.get("configs", []):
        if section == "clusters":
            c = config.get("cluster", {})
            rows.append({"name": c.get("name", ""), "type": c.get("type", "")})
        elif section == "listeners":
            active = config.get("active_state", {}).get("listener", {})
            sock = active.get("address", {}).get("socket_address", {})
            rows.append(
                {
                    "name": config.get("name", ""),
                    "address": f"{sock.get('address', '')}:{sock.get('port_value', '')}",
                    "state": "active" if config.get("active_state") else "warming",
                }
            )
        elif section == "routes":
            rc = config.get("route_config", {})
            for vh in rc.get("virtual_hosts", []):
                rows.append(
                    {
                        "route_config": rc.get("name", ""),
                        "virtual_host": vh.get("name", ""),
                        "domains": ",".join(vh.get("domains", [])),
                        "routes": len(vh.get("routes", [])),
                    }
                )
    return rows
