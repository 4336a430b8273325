"""Gateway `status.addresses` from the gateway proxies connected now: where a Gateway can be reached.

In Kubernetes the address is the Service of the Gateway's deployment. Here it is what the proxies serving the
Gateway bind: each one's listener address (node metadata `bind`, else its `address`) as an `IPAddress`, and
the bound `address:port` of each listener port (its `gateway_ports` mapping, e.g. 80 -> 8080 under
`mecha up`) as a `mecha.io/HostPort` address (a domain-prefixed type, which the spec leaves to
implementations). Computed on each request: proxies come and go without a config change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xds.gatewayapi.kinds import GATEWAY, is_gateway_api
from xds.proxy import ProxyIdentity, ProxyMode

HOST_PORT = "mecha.io/HostPort"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"  # = convert.py's selector label


def _serves(proxy: ProxyIdentity, namespace: str, name: str) -> bool:
    if proxy.mode is not ProxyMode.GATEWAY:
        return False
    return f"{namespace}/{name}" in proxy.gateways or proxy.label_map.get(GATEWAY_NAME_LABEL) == name


def _ports(body: dict[str, Any]) -> list[int]:
    raw = body.get("spec")
    spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
    found = [ls.get("port") for ls in spec.get("listeners") or [] if isinstance(ls, dict)]
    return sorted({p for p in found if isinstance(p, int) and not isinstance(p, bool)})


def gateway_addresses(
    documents: Iterable[Any], proxies: Iterable[ProxyIdentity]
) -> dict[tuple[str, str], list]:
    """(namespace, name) of each Gateway API Gateway some connected proxy serves -> its status.addresses."""
    gateway_proxies = [p for p in proxies if p.mode is ProxyMode.GATEWAY]
    out: dict[tuple[str, str], list[dict[str, str]]] = {}
    if not gateway_proxies:
        return out
    for doc in documents:
        kind, namespace, name = doc.key
        if kind != GATEWAY or not is_gateway_api(doc.api_version):
            continue
        serving = [p for p in gateway_proxies if _serves(p, namespace, name)]
        if not serving:
            continue
        ips: list[str] = []
        bound: list[str] = []
        for proxy in sorted(serving, key=lambda p: p.id):
            ip = proxy.bind if proxy.bind and proxy.bind not in ("0.0.0.0", "::") else proxy.address
            ips.append(ip)
            mapping = dict(proxy.gateway_ports)
            host = f"[{ip}]" if ":" in ip else ip
            bound += [f"{host}:{mapping.get(port, port)}" for port in _ports(doc.body)]
        addresses = [{"type": "IPAddress", "value": ip} for ip in dict.fromkeys(ips)]
        out[(namespace, name)] = addresses + [{"type": HOST_PORT, "value": v} for v in dict.fromkeys(bound)]
    return out


def with_addresses(items: list[dict[str, Any]], found: dict[tuple[str, str], list]) -> list[dict[str, Any]]:
    """The rendered status items; a served Gateway's status opens with its addresses, as kubectl shows."""
    out = []
    for item in items:
        meta = item.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if item.get("kind") == GATEWAY and key in found:
            item = {**item, "status": {"addresses": found[key], **item.get("status", {})}}
        out.append(item)
    return out
