"""Read a proxy's live config from its Envoy admin API (what Envoy actually applied, not what we sent)."""

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


async def admin_get_json(admin: str, path: str, timeout_s: float = 5.0) -> Any:
    url = f"http://{admin}{path}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            async with session.get(url) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise AdminError(f"Envoy admin {url} answered {resp.status}: {text.strip()[:200]}")
                return json.loads(text) if text.strip() else {}
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise AdminError(f"Envoy admin at {admin} is unreachable: {exc}") from exc
    except ValueError as exc:
        raise AdminError(f"Envoy admin {url} returned invalid JSON: {exc}") from exc


async def proxy_config(admin: str, section: str) -> Any:
    if section not in SECTIONS:
        raise KeyError(section)
    return await admin_get_json(admin, SECTIONS[section])


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
