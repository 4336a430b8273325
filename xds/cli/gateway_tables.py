"""`mecha get` tables: the columns the Gateway API CRDs give kubectl (additionalPrinterColumns), AGE as
kubectl prints it, and with -o wide what a user checks next (listeners, parents, Accepted)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from xds.cli.gateway_kinds import ResourceType
from xds.cli.tables import table

Obj = dict[str, Any]
Column = tuple[str, Callable[[Obj, datetime], str]]
ADDRESS_TYPE = "mecha.io/HostPort"  # the bound address:port of a listener (status.addresses)


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery duration.HumanDuration: 45s, 3m20s, 17m, 5h12m, 30h, 3d4h, 40d, 2y10d, 9y."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    years, days = hours // (24 * 365), (hours // 24) % 365
    if years < 8:
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{years}y"


def age(obj: Obj, now: datetime) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    try:
        created = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def _condition(conditions: Any, kind: str) -> str:
    found = next((c for c in conditions or [] if isinstance(c, dict) and c.get("type") == kind), None)
    return str(found.get("status")) if found else "Unknown"


def _status(obj: Obj) -> Obj:
    found = obj.get("status")
    return found if isinstance(found, dict) else {}


def _spec(obj: Obj) -> Obj:
    found = obj.get("spec")
    return found if isinstance(found, dict) else {}


def address(obj: Obj, _now: datetime) -> str:
    """The bound address:port of each listener when the control plane knows them, else the addresses."""
    addresses = [a for a in _status(obj).get("addresses") or [] if isinstance(a, dict)]
    bound = [str(a.get("value")) for a in addresses if a.get("type") == ADDRESS_TYPE]
    return ",".join(bound or [str(a.get("value")) for a in addresses][:1])


def listeners(obj: Obj, _now: datetime) -> str:
    out = []
    for ls in _spec(obj).get("listeners") or []:
        if isinstance(ls, dict):
            host = f"[{ls['hostname']}]" if ls.get("hostname") else ""
            out.append(f"{ls.get('name')}:{ls.get('port')}/{ls.get('protocol')}{host}")
    return ",".join(out)


def hostnames(obj: Obj, _now: datetime) -> str:
    return ",".join(str(h) for h in _spec(obj).get("hostnames") or []) or ""


def parents(obj: Obj, _now: datetime) -> str:
    out = []
    for ref in _spec(obj).get("parentRefs") or []:
        if isinstance(ref, dict):
            name = f"{ref['namespace']}/{ref.get('name')}" if ref.get("namespace") else str(ref.get("name"))
            out.append(name + (f"/{ref['sectionName']}" if ref.get("sectionName") else ""))
    return ",".join(out)


def route_accepted(obj: Obj, _now: datetime) -> str:
    """Each parent's Accepted status, with the reason when not True: `True,False(NotAllowedByListeners)`."""
    out = []
    for parent in _status(obj).get("parents") or []:
        conditions = parent.get("conditions") if isinstance(parent, dict) else None
        found = next((c for c in conditions or [] if c.get("type") == "Accepted"), None)
        if found is None:
            out.append("Unknown")
        else:
            out.append(
                "True" if found.get("status") == "True" else f"{found.get('status')}({found.get('reason')})"
            )
    return ",".join(out) or "Unknown"


def _named(field: str) -> Callable[[Obj, datetime], str]:
    return lambda obj, _now: str(_spec(obj).get(field) or "")


def _cond(kind: str) -> Callable[[Obj, datetime], str]:
    return lambda obj, _now: _condition(_status(obj).get("conditions"), kind)


# The CRDs' printer columns (NAME and AGE around them); wide: priority-1 columns and Mecha's additions.
COLUMNS: dict[str, list[Column]] = {
    "GatewayClass": [("CONTROLLER", _named("controllerName")), ("ACCEPTED", _cond("Accepted"))],
    "Gateway": [
        ("CLASS", _named("gatewayClassName")),
        ("ADDRESS", address),
        ("PROGRAMMED", _cond("Programmed")),
    ],
    "HTTPRoute": [("HOSTNAMES", hostnames)],
    "GRPCRoute": [("HOSTNAMES", hostnames)],
}
WIDE: dict[str, list[Column]] = {
    "GatewayClass": [("DESCRIPTION", _named("description"))],
    "Gateway": [("LISTENERS", listeners), ("ACCEPTED", _cond("Accepted"))],
}
ROUTE_WIDE: list[Column] = [("PARENTS", parents), ("ACCEPTED", route_accepted)]
ROUTES = {"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"}


def columns_of(rtype: ResourceType, wide: bool) -> list[Column]:
    found = list(COLUMNS.get(rtype.kind, []))
    if wide:
        found += WIDE.get(rtype.kind, ROUTE_WIDE if rtype.kind in ROUTES else [])
    return found


def render_tables(
    objects: Sequence[tuple[ResourceType, Obj]],
    types: Sequence[ResourceType],
    *,
    all_namespaces: bool,
    wide: bool,
    now: datetime,
) -> str:
    """One table per type that has objects, blank-line separated; names `kind.group/name` when several
    types were asked for, and a NAMESPACE column with -A (for namespaced types), as kubectl prints them."""
    blocks = []
    for rtype in types:
        mine = [o for t, o in objects if t == rtype]
        if not mine:
            continue
        cols = columns_of(rtype, wide)
        with_ns = all_namespaces and rtype.namespaced
        headers = (["NAMESPACE"] if with_ns else []) + ["NAME"] + [h for h, _ in cols] + ["AGE"]
        rows = []
        for obj in mine:
            meta = obj.get("metadata") or {}
            name = str(meta.get("name", ""))
            name = f"{rtype.qualified}/{name}" if len(types) > 1 else name
            row = ([str(meta.get("namespace", ""))] if with_ns else []) + [name]
            rows.append(row + [fn(obj, now) for _h, fn in cols] + [age(obj, now)])
        blocks.append(table(headers, rows))
    return "\n\n".join(blocks)
