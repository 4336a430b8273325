"""Per-proxy EDS for locality load balancing: which clusters' CLAs depend on the proxy, and the proxy's EDS
set with those CLAs rebuilt for its locality (xds.translate.locality_lb does the CLA itself)."""

from __future__ import annotations

from xds import types
from xds.model.mesh import MeshConfig
from xds.model.meta import Labels
from xds.model.resources import Service, ServicePort, TrafficPolicy
from xds.proxy import ProxyIdentity
from xds.translate.cluster import effective_policy
from xds.translate.envoy_core import outbound_cluster_name
from xds.translate.locality_lb import depends_on_proxy, locality_cla, topology_labels
from xds.translate.mesh import TypeSet
from xds.translate.pack import Memo
from xds.translate.sidecar_scope import ScopedView
from xds.translate.source_matches import proxy_labels
from xds.types import Resource

ClusterSpec = tuple[str, Service, ServicePort, "Labels | None", "TrafficPolicy | None"]


def dependent_clusters(config: MeshConfig, view: ScopedView | None) -> list[ClusterSpec]:
    """(name, service, port, subset labels, policy) of every EDS cluster whose CLA depends on the proxy."""
    out: list[ClusterSpec] = []
    if not _any_may_depend(config):
        return out  # no outlier detection and no distribute anywhere: nothing depends on the proxy
    for svc in config.services if view is None else view.services:
        if svc.resolution != "STATIC":
            continue
        rule = config.rule_by_host.get(svc.host) if view is None else view.rule_for(svc.host)
        subsets = [("", None)] + [(s.name, s.labels) for s in (rule.subsets if rule else ())]
        for port in svc.ports:
            for subset, labels in subsets:
                policy = effective_policy(rule, subset, port.number)
                if depends_on_proxy(svc, port, labels, policy):
                    out.append(
                        (outbound_cluster_name(port.number, subset, svc.host), svc, port, labels, policy)
                    )
    return out


def _any_may_depend(config: MeshConfig) -> bool:
    return any(
        _may_depend(dr.traffic_policy) or any(_may_depend(s.traffic_policy) for s in dr.subsets)
        for dr in config.destination_rules
    )


def _may_depend(policy: TrafficPolicy | None) -> bool:
    if policy is None:
        return False
    if policy.outlier_detection is not None or (policy.locality is not None and policy.locality.distribute):
        return True
    return any(_may_depend(p) for _, p in policy.port_level)


class LocalityEndpoints:
    """Per-proxy EDS: the mesh-wide (or scope-wide) set with the proxy-dependent CLAs replaced, shared by
    every proxy with the same locality (and failoverPriority labels) in the same scope."""

    def __init__(self, memo: Memo) -> None:
        self.memo = memo
        self._rules: object = None
        self._may = False

    def for_proxy(
        self, config: MeshConfig, view: ScopedView | None, proxy: ProxyIdentity, shared: TypeSet
    ) -> TypeSet:
        rules = config.destination_rules
        if self._rules is not rules:  # cheap pre-check, once per config: most meshes need nothing here
            self._rules, self._may = rules, _any_may_depend(config)
        if not self._may:
            return shared
        scope = view.scope.key if view is not None else ("", "")
        specs = self.memo.get(
            ("locality-deps", *scope),
            (config.services, config.destination_rules, view.services if view is not None else None),
            lambda: dependent_clusters(config, view),
        )
        if not specs:
            return shared
        labels: dict[str, str] = {}
        if any(p is not None and p.locality is not None and p.locality.failover_priority for *_, p in specs):
            labels = {**proxy_labels(proxy), **topology_labels(proxy.locality)}
        if not proxy.locality and not labels:
            return shared  # the mesh-wide CLAs are the ones for a proxy without locality and labels
        key = (*scope, proxy.locality, tuple(sorted(labels.items())))

        def build() -> TypeSet:
            mapping = dict(shared.resources)
            for name, svc, port, subset_labels, policy in specs:
                body = bytes(locality_cla(name, svc, port, subset_labels, policy, proxy.locality, labels))
                mapping[name] = Resource.make(types.ENDPOINT, name, body)
            return TypeSet.of(list(mapping.values()))

        return self.memo.get(("eds-locality", *key), (shared, *specs), build)
