"""The reference graph: one node per resource/service/subset, one edge per reference (with its field path)."""

from __future__ import annotations

import networkx as nx

from xds.gatewayapi.invalid import INVALID_BACKENDS
from xds.model.mesh import MeshConfig
from xds.model.meta import Meta
from xds.model.traffic import Destination

Node = tuple[str, ...]


def vs_node(namespace: str, name: str) -> Node:
    return ("VirtualService", namespace, name)


def service_node(host: str) -> Node:
    return ("Service", host)


def subset_node(host: str, subset: str) -> Node:
    return ("Subset", host, subset)


def meta_node(meta: Meta) -> Node:
    return (meta.kind, meta.namespace, meta.name)


def _destination_edges(g: nx.MultiDiGraph, src: Node, meta: Meta, dest: Destination, field: str) -> None:
    if dest.host in INVALID_BACKENDS:
        return  # the share of Gateway API backends already reported unresolved: answered 500 on purpose
    g.add_edge(src, service_node(dest.host), field=f"{field}.host", meta=meta, ref="host", dest=dest)
    if dest.subset:
        g.add_edge(
            src,
            subset_node(dest.host, dest.subset),
            field=f"{field}.subset",
            meta=meta,
            ref="subset",
            dest=dest,
        )


def build_graph(config: MeshConfig) -> nx.MultiDiGraph:
    """Nodes carry `present=True` when the target exists; dangling references point at absent nodes. A
    multigraph: two routes of one VirtualService to the same missing host are two edges, each reported."""
    g: nx.MultiDiGraph = nx.MultiDiGraph()
    for svc in config.services:
        g.add_node(service_node(svc.host), present=True, service=svc)
    for dr in config.destination_rules:
        node = meta_node(dr.meta)
        g.add_node(node, present=True, obj=dr)
        g.add_edge(node, service_node(dr.host), field="spec.host", meta=dr.meta, ref="host")
        for s in dr.subsets:
            g.add_node(subset_node(dr.host, s.name), present=True, rule=dr)
    for vs in config.virtual_services:
        src = vs_node(vs.meta.namespace, vs.meta.name)
        g.add_node(src, present=True, obj=vs)
        for route in vs.http:
            base = f"spec.http[{route.index}]"
            for j, rd in enumerate(route.route):
                _destination_edges(g, src, vs.meta, rd.destination, f"{base}.route[{j}].destination")
            for mirror in route.mirrors:
                _destination_edges(g, src, vs.meta, mirror.destination, f"{base}.{mirror.field}")
            if route.delegate is not None:
                target = vs_node(route.delegate.namespace, route.delegate.name)
                g.add_edge(src, target, field=f"{base}.delegate", meta=vs.meta, ref="delegate")
        for kind, l4_routes in (("tcp", vs.tcp), ("tls", vs.tls)):
            for l4 in l4_routes:
                for j, rd in enumerate(l4.route):
                    field = f"spec.{kind}[{l4.index}].route[{j}].destination"
                    _destination_edges(g, src, vs.meta, rd.destination, field)
    for comp in config.components:
        g.add_node(meta_node(comp.meta), present=True, obj=comp)
    for sub in config.subscriptions:
        src = meta_node(sub.meta)
        g.add_node(src, present=True, obj=sub)
        g.add_edge(
            src,
            ("Component", sub.meta.namespace, sub.pubsubname),
            field="spec.pubsubname",
            meta=sub.meta,
            ref="pubsub",
        )
    for res in config.resiliencies:
        src = meta_node(res.meta)
        g.add_node(src, present=True, obj=res)
        for name in res.target_components:
            g.add_edge(
                src,
                ("Component", res.meta.namespace, name),
                field=f"spec.targets.components.{name}",
                meta=res.meta,
                ref="component",
            )
    return g
