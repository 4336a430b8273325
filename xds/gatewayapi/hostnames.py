"""Gateway API hostname rules: wildcard matching, the hostnames a route serves on a listener, and listener
isolation (a request goes to the listener with the most specific matching hostname, and only there)."""

from __future__ import annotations

ANY = "*"  # a listener without hostname / a route without hostnames


def covers(pattern: str, host: str) -> bool:
    """pattern matches every name host does: `*.example.com` covers `a.example.com`, `a.b.example.com` and
    `*.b.example.com`, not `example.com`; `*` covers everything."""
    if pattern in (ANY, host):
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]  # ".example.com"
    name = host[1:] if host.startswith("*.") else host
    return name.endswith(suffix) and len(name) > len(suffix)


def intersection(listener: str, route: str) -> str | None:
    """The names a route hostname serves on a listener hostname ("" = any): the narrower of the two when one
    covers the other, else None (the route hostname is ignored on that listener)."""
    if not listener:
        return route
    if covers(listener, route):
        return route
    if covers(route, listener):
        return listener
    return None


def served_hosts(listener: str, route_hostnames: tuple[str, ...]) -> list[str]:
    """Hostnames a route serves on a listener, in the route's order, duplicates removed."""
    if not route_hostnames:
        return [listener or ANY]
    out: list[str] = []
    for hostname in route_hostnames:
        found = intersection(listener, hostname)
        if found is not None and found not in out:
            out.append(found)
    return out


def isolated(host: str, listener: str, others: list[str]) -> bool:
    """Listener isolation: False when another listener of the same port has a more specific hostname that
    covers host (requests for host belong to that listener). Exact listener hostnames need no check."""
    if listener and not listener.startswith("*."):
        return True
    for other in others:
        if not other or len(listener) > len(other):
            continue
        if covers(other, host):
            return False
    return True


def most_specific(host: str, candidates: list[str]) -> str | None:
    """The candidate Envoy would pick for requests to host: equal first, then the longest wildcard that
    covers it, then `*`."""
    if host in candidates:
        return host
    wildcards = [c for c in candidates if c != ANY and c.startswith("*.") and covers(c, host)]
    if wildcards:
        return max(wildcards, key=len)
    return ANY if ANY in candidates else None
