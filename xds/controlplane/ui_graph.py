"""The dashboard's mesh graph: nodes and weighted edges from the config documents, rates from Envoy stats.

Nodes: gateways, services (a VirtualService host or a workload's `app` label) and workloads (service +
version). Edges: gateway -> service (a VirtualService bound to the gateway), service -> workload (the route
weights, e.g. reviews -> v1 80 / v2 20), and caller workload -> service where a proxy's outbound cluster
has carried requests. Request and 5xx rates per edge come from the callers' cluster counters.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

RATE_KEYS = ("upstream_rq_total", "upstream_rq_5xx")


def short_host(host: str) -> str:
    return host.split(".", 1)[0]


def _cluster_stat(name: str) -> tuple[str, str, str] | None:
    """'cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_total' ->
    ('reviews', 'v1', 'upstream_rq_total')."""
    for key in RATE_KEYS:
        if name.endswith("." + key):
            cluster = name[len("cluster.") : -len(key) - 1]
            parts = cluster.split("|")
            if len(parts) == 4 and parts[0] == "outbound":
                return short_host(parts[3]), parts[2], key
    return None


def outbound_edge_stats(
    cache: dict[str, Any], scraped: dict[str, dict[str, float]], now: float
) -> dict[str, dict[str, float]]:
    """proxy id -> {"service|subset": {total, errors, rps, eps}}, rates against the previous scrape."""
    previous: dict[str, Any] = cache.get("counters", {})
    then = cache.get("at")
    out: dict[str, dict[str, Any]] = {}
    for proxy_id, stats in scraped.items():
        edges: dict[str, dict[str, float]] = defaultdict(lambda: {"total": 0.0, "errors": 0.0})
        for name, value in stats.items():
            parsed = _cluster_stat(name)
            if parsed is None:
                continue
            service, subset, key = parsed
            edges[f"{service}|{subset}"]["total" if key == "upstream_rq_total" else "errors"] += value
        for edge_key, counts in edges.items():
            before = previous.get(proxy_id, {}).get(edge_key)
            if before is not None and then is not None and now > then:
                counts["rps"] = max(0.0, counts["total"] - before["total"]) / (now - then)
                counts["eps"] = max(0.0, counts["errors"] - before["errors"]) / (now - then)
        out[proxy_id] = dict(edges)
    cache["counters"], cache["at"] = out, now
    return out


def _workload_of(labels: dict[str, str], fallback: str) -> tuple[str, str]:
    return labels.get("app") or fallback, labels.get("version", "")


def mesh_graph(
    documents: list[dict[str, Any]],
    proxies: list[dict[str, Any]],
    identities: dict[str, Any],
    stats: dict[str, dict[str, dict[str, float]]],
) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    state_of = {p["proxy_id"]: p["state"] for p in proxies}

    def node(node_id: str, kind: str, label: str, **extra: Any) -> None:
        nodes.setdefault(node_id, {"id": node_id, "kind": kind, "label": label, **extra})

    def edge(src: str, dst: str, **extra: Any) -> dict[str, Any]:
        return edges.setdefault((src, dst), {"from": src, "to": dst, **extra})

    # Workloads: WorkloadEntry documents and the apps proxies announce.
    for doc in documents:
        if doc["kind"] == "WorkloadEntry":
            labels = (doc.get("body", {}).get("spec") or {}).get("labels") or {}
            service, version = _workload_of(labels, doc["name"])
            node(f"svc:{service}", "service", service)
            node(f"wl:{service}:{version}", "workload", f"{service} {version}".strip(), service=service,
                 version=version, proxy="")  # fmt: skip
    proxy_of_workload: dict[str, str] = {}
    for proxy_id, identity in identities.items():
        if str(identity.mode) in ("gateway", "ProxyMode.GATEWAY"):
            node(f"gw:{proxy_id}", "gateway", proxy_id, proxy=proxy_id, state=state_of.get(proxy_id, ""))
            continue
        for app in identity.apps:
            service, version = _workload_of(dict(app.labels), app.name)
            node(f"svc:{service}", "service", service)
            wid = f"wl:{service}:{version}"
            node(wid, "workload", f"{service} {version}".strip(), service=service, version=version)
            nodes[wid].update(proxy=proxy_id, state=state_of.get(proxy_id, ""))
            proxy_of_workload[proxy_id] = wid
    gateway_nodes = [n for n in nodes.values() if n["kind"] == "gateway"]

    # Routes: VirtualService destinations with their weights.
    for doc in documents:
        if doc["kind"] != "VirtualService":
            continue
        spec = doc.get("body", {}).get("spec") or {}
        hosts = [short_host(h) for h in spec.get("hosts", []) if h != "*"]
        for http in spec.get("http", []) or []:
            routes = http.get("route", []) or []
            for route in routes:
                dest = route.get("destination") or {}
                service = short_host(str(dest.get("host", "")))
                if not service:
                    continue
                node(f"svc:{service}", "service", service)
                subset = str(dest.get("subset", ""))
                weight = route.get("weight", 100 if len(routes) == 1 else 0)
                targets = [
                    n for n in nodes.values() if n["kind"] == "workload" and n.get("service") == service
                ]
                for target in targets:
                    if subset and target.get("version") != subset:
                        continue
                    e = edge(f"svc:{service}", target["id"], kind="route")
                    e.setdefault("routes", []).append({"name": http.get("name", ""), "weight": weight})
                for host in hosts:
                    if host != service:
                        edge(f"svc:{host}", f"svc:{service}", kind="route")
            if spec.get("gateways"):
                for gw in gateway_nodes:
                    for host in {
                        short_host(str((r.get("destination") or {}).get("host", ""))) for r in routes
                    }:
                        if host:
                            edge(gw["id"], f"svc:{host}", kind="gateway")

    # A service no route splits reaches all its workloads (default round robin).
    routed = {e["from"] for e in edges.values() if e["to"].startswith("wl:")}
    for target in [n for n in nodes.values() if n["kind"] == "workload"]:
        if f"svc:{target['service']}" not in routed:
            edge(f"svc:{target['service']}", target["id"], kind="route")

    # Traffic: what each proxy's outbound clusters carried.
    for proxy_id, per_edge in stats.items():
        source = proxy_of_workload.get(proxy_id) or (f"gw:{proxy_id}" if f"gw:{proxy_id}" in nodes else None)
        if source is None:
            continue
        for edge_key, counts in per_edge.items():
            service, subset = edge_key.split("|", 1)
            if f"svc:{service}" not in nodes or counts["total"] <= 0:
                continue
            caller = edge(source, f"svc:{service}", kind="traffic")
            _add_rates(caller, counts)
            if subset:
                for target in nodes.values():
                    if (
                        target["kind"] == "workload"
                        and target.get("service") == service
                        and target.get("version") == subset
                    ):
                        _add_rates(edge(f"svc:{service}", target["id"], kind="route"), counts)
    return {"nodes": sorted(nodes.values(), key=lambda n: n["id"]), "edges": list(edges.values())}


def _add_rates(target: dict[str, Any], counts: dict[str, float]) -> None:
    target["requests"] = target.get("requests", 0.0) + counts["total"]
    target["errors"] = target.get("errors", 0.0) + counts["errors"]
    target["rps"] = target.get("rps", 0.0) + counts.get("rps", 0.0)
    target["eps"] = target.get("eps", 0.0) + counts.get("eps", 0.0)
