"""Locality load balancing (istio-mapping.md §2; istiod loadbalancer.go): endpoints grouped by locality in
the ClusterLoadAssignment, with priorities (failover, failoverPriority) or weights (distribute) relative to
the locality of the proxy that receives it.

The DestinationRule's `localityLbSetting` wins; without one the mesh default applies (enabled, no explicit
failover), and `enabled: false` turns it off. As in istiod, failover priorities are only emitted when the
cluster has outlierDetection (Envoy never moves to a lower priority otherwise), and `distribute` replaces
failover. A CLA that depends on the proxy is built per (cluster, proxy locality) and shared by every proxy
of that locality; clusters that do not depend on it keep the mesh-wide CLA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep

from xds.model.meta import Labels
from xds.model.resources import Service, ServicePort, TrafficPolicy, WorkloadEndpoint
from xds.model.traffic import LocalityLb
from xds.translate.endpoint import cla_bytes, eds_health, in_eds, selected_endpoints
from xds.translate.envoy_core import socket

MESH_DEFAULT = LocalityLb(enabled=True)  # meshConfig.localityLbSetting default
REGION, ZONE, SUBZONE = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)
Locality = tuple[str, str, str]


def split_locality(text: str) -> Locality:
    parts = [*text.split("/"), "", ""][:3]
    return parts[0], parts[1], parts[2]


def topology_labels(locality: str) -> dict[str, str]:
    """istiod AugmentLabels: the locality as the well-known topology labels (failoverPriority uses them)."""
    if not locality:
        return {}
    region, zone, subzone = split_locality(locality)
    out = {REGION: region}
    if zone:
        out[ZONE] = zone
    if subzone:
        out[SUBZONE] = subzone
    return out


def resolved_setting(policy: TrafficPolicy | None) -> LocalityLb | None:
    """istiod GetLocalityLbSetting: the DR's setting unless disabled, else the mesh default."""
    setting = policy.locality if policy is not None else None
    if setting is not None:
        return None if setting.enabled is False else setting
    return MESH_DEFAULT


def weighted_config(policy: TrafficPolicy | None) -> bool:
    """istiod applyLocalityLoadBalancer: locality_weighted_lb_config on the cluster when distribute is set,
    or failover / failoverPriority with outlier detection."""
    setting = resolved_setting(policy)
    if setting is None:
        return False
    failover = bool(setting.failover or setting.failover_priority)
    return bool(setting.distribute) or (
        failover and policy is not None and policy.outlier_detection is not None
    )


def _picked(svc: Service, port: ServicePort, subset_labels: Labels | None) -> list[WorkloadEndpoint]:
    return sorted(
        (e for e in svc.endpoints if in_eds(e) and (subset_labels is None or e.matches(subset_labels))),
        key=lambda e: (e.address, e.port_for(port), e.weight),
    )


def depends_on_proxy(
    svc: Service, port: ServicePort, subset_labels: Labels | None, policy: TrafficPolicy | None
) -> bool:
    """True when the CLA differs with the proxy's locality or labels (else the mesh-wide CLA is exact)."""
    setting = resolved_setting(policy)
    if setting is None or svc.resolution != "STATIC":
        return False
    if setting.distribute:
        return True
    if policy is None or policy.outlier_detection is None:
        return False
    return bool(setting.failover_priority) or any(e.locality for e in _picked(svc, port, subset_labels))


@dataclass
class _Group:
    locality: str
    members: list[WorkloadEndpoint]
    weights: list[int]
    priority: int = 0
    weight: int | None = None


def _lb_priority(proxy: Locality, endpoints: Locality) -> int:
    """istiod util.LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere."""
    if proxy[0] != endpoints[0]:
        return 3
    if proxy[1] != endpoints[1]:
        return 2
    return 0 if proxy[2] == endpoints[2] else 1


def _compact(groups: list[_Group]) -> None:
    """Priorities must run 0..N without gaps: renumber in increasing order."""
    order = {p: i for i, p in enumerate(sorted({g.priority for g in groups}))}
    for g in groups:
        g.priority = order[g.priority]


def _apply_failover(groups: list[_Group], proxy: str, failover: tuple[tuple[str, str], ...]) -> None:
    mine = split_locality(proxy)
    for g in groups:
        theirs = split_locality(g.locality)
        priority = _lb_priority(mine, theirs)
        if priority == 3:
            rule = next((to for frm, to in failover if frm == mine[0]), None)
            if rule is not None and theirs[0] != rule:
                priority = 4
        g.priority = g.priority * 5 + priority  # keeps priorities already set by failoverPriority
    _compact(groups)


def _apply_failover_priority(
    groups: list[_Group], proxy_labels: dict[str, str], priorities: tuple[str, ...]
) -> list[_Group]:
    """Split each locality by how many leading failoverPriority labels match the proxy's ("label=value"
    overrides the proxy's value); fewer matches = lower priority."""
    if not proxy_labels:
        return groups
    names = [p.split("=", 1)[0] for p in priorities]
    overrides = dict(p.split("=", 1) for p in priorities if "=" in p)
    lowest = len(names)
    out: list[_Group] = []
    for g in groups:
        by_priority: dict[int, _Group] = {}
        for e, w in zip(g.members, g.weights, strict=True):
            labels = {**dict(e.labels), **topology_labels(e.locality)}
            priority = 0
            for j, name in enumerate(names):
                if overrides.get(name, proxy_labels.get(name)) != labels.get(name):
                    priority = lowest - j
                    break
            part = by_priority.setdefault(priority, _Group(g.locality, [], [], priority))
            part.members.append(e)
            part.weights.append(w)
        for priority in sorted(by_priority):
            part = by_priority[priority]
            part.weight = sum(part.weights)
            out.append(part)
    _compact(out)
    return out


def _matches(locality: str, rule: str) -> bool:
    """istiod util.LocalityMatch: region must match ('*' any); zone/subzone may be '*' or absent."""
    mine, theirs = split_locality(locality), split_locality(rule)
    if theirs[0] != "*" and mine[0] != theirs[0]:
        return False
    return all(t in ("*", "") or m == t for m, t in zip(mine[1:], theirs[1:], strict=True))


def _apply_distribute(
    groups: list[_Group], proxy: str, distribute: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
) -> None:
    for frm, to in distribute:
        if not _matches(proxy, frm):
            continue
        unmatched = set(range(len(groups)))
        for target, weight in to:
            chosen = [i for i in sorted(unmatched) if _matches(groups[i].locality, target)]
            total = sum(groups[i].weight or 1 for i in chosen)
            for i in chosen:
                unmatched.discard(i)
                share = (groups[i].weight or 1) * weight / total
                if share > 0:
                    groups[i].weight = math.ceil(share)
        for i in unmatched:
            groups[i].members, groups[i].weights = [], []  # localities not listed get no traffic
        return


def locality_cla(
    name: str,
    svc: Service,
    port: ServicePort,
    subset_labels: Labels | None,
    policy: TrafficPolicy | None,
    proxy_locality: str,
    proxy_labels: dict[str, str],
) -> ep.ClusterLoadAssignment:
    """istiod ApplyLocalityLoadBalancer on the CLA of one cluster, for a proxy in proxy_locality."""
    by_locality: dict[str, _Group] = {}
    for e in _picked(svc, port, subset_labels):
        g = by_locality.setdefault(e.locality, _Group(e.locality, [], []))
        g.members.append(e)
        g.weights.append(e.weight or 1)
    groups = [by_locality[k] for k in sorted(by_locality)]
    for g in groups:
        g.weight = sum(g.weights)
    setting = resolved_setting(policy)
    outlier = policy is not None and policy.outlier_detection is not None
    if setting is not None and setting.distribute:
        _apply_distribute(groups, proxy_locality, setting.distribute)
    elif setting is not None and outlier:
        if setting.failover_priority:
            groups = _apply_failover_priority(groups, proxy_labels, setting.failover_priority)
            if setting.failover:
                _apply_failover(groups, proxy_locality, setting.failover)
        else:
            _apply_failover(groups, proxy_locality, setting.failover)
    return ep.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            ep.LocalityLbEndpoints(
                locality=_locality_message(g.locality),
                lb_endpoints=[
                    ep.LbEndpoint(
                        endpoint=ep.Endpoint(address=socket(e.address, e.port_for(port))),
                        load_balancing_weight=e.weight or None,
                        health_status=eds_health(e.health),
                    )
                    for e in g.members
                ],
                load_balancing_weight=g.weight or None,
                priority=g.priority,
            )
            for g in groups
        ],
    )


def _locality_message(locality: str) -> core.Locality | None:
    if not locality:
        return None
    region, zone, subzone = split_locality(locality)
    return core.Locality(region=region, zone=zone, sub_zone=subzone)


def grouped(svc: Service, port: ServicePort, subset_labels: Labels | None) -> bool:
    return any(e.locality for e in svc.endpoints if subset_labels is None or e.matches(subset_labels))


def cla_for(
    name: str,
    svc: Service,
    port: ServicePort,
    subset_labels: Labels | None,
    policy: TrafficPolicy | None,
    proxy_locality: str = "",
    proxy_labels: dict[str, str] | None = None,
) -> bytes:
    """The CLA bytes of one EDS cluster as a proxy in proxy_locality sees it ("" = the mesh-wide one)."""
    if depends_on_proxy(svc, port, subset_labels, policy) or grouped(svc, port, subset_labels):
        return bytes(locality_cla(name, svc, port, subset_labels, policy, proxy_locality, proxy_labels or {}))
    return cla_bytes(name, selected_endpoints(svc, port, subset_labels))
