"""Read a proxy's live config from its Envoy admin API (what Envoy actually applied, not what we sent).

Through the proxy's agent when it holds an admin relay stream (xds/controlplane/adminrelay.py: the admin stays
on loopback beside Envoy, as in compose and Kubernetes); on a shared store, through the other replica that
holds that stream (replica_relay.py: any replica answers for the whole fleet); else from the admin address the
proxy announced (node.metadata.mecha.admin, `mecha up` without agents)."""

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
    """GET <path> (JSON) from the proxy's Envoy admin: through its agent's relay when this replica holds it,
    else through the replica that does, else at the admin address it announced; NoAdminError when none."""
    from xds.controlplane.adminrelay import RelayError

    identity = getattr(cp, "identity", None)
    relays = getattr(identity, "admin_relay", None)  # None: --insecure-xds
    if relays is not None and relays.connected(proxy_id):
        try:
            status, text = await relays.get(proxy_id, path, timeout_s)
        except RelayError as exc:
            raise AdminError(str(exc)) from None
        return _parsed(f"{path} (relayed by the agent of {proxy_id!r})", status, text)
    failures: list[str] = []
    peers = getattr(identity, "replica_relay", None)
    if peers is not None:
        relayed = await _through_replicas(cp, peers, proxy_id, path, timeout_s, failures)
        if relayed is not None:
            address, status, text = relayed
            return _parsed(
                f"{path} (relayed by the agent of {proxy_id!r} on replica {address})", status, text
            )
    if admin:
        return await admin_get_json(admin, path, timeout_s)
    if failures:  # a replica that may hold the relay could not be asked: not "no relay anywhere"
        raise AdminError(f"proxy {proxy_id!r}: " + "; ".join(failures))
    raise NoAdminError(
        f"proxy {proxy_id!r} has no agent holding an admin relay and did not announce an admin address "
        "(node.metadata.mecha.admin)"
    )


async def _through_replicas(
    cp: Any, peers: Any, proxy_id: str, path: str, timeout_s: float, failures: list[str]
) -> tuple[str, int, str] | None:
    """(replica address, status, body) from the other live replica holding the proxy's relay; None when
    none does. The replica holding its xDS stream is asked first (the agent opens both on one channel);
    the others after it, in case the relay stream sits elsewhere."""
    from xds.controlplane.adminrelay import RelayError
    from xds.controlplane.replica_relay import NotHeld

    replication = getattr(cp, "replication", None)
    others: list[dict[str, Any]] = list(getattr(replication, "others", None) or [])
    await peers.retain({str(o["address"]) for o in others})
    holding = [o for o in others if any(p.get("proxy_id") == proxy_id for p in o.get("proxies", []))]
    for other in holding + [o for o in others if o not in holding]:
        address = str(other["address"])
        try:
            status, text = await peers.get(address, proxy_id, path, timeout_s)
        except NotHeld:
            continue
        except RelayError as exc:
            failures.append(str(exc))
            continue
        return address, status, text
    return None


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
