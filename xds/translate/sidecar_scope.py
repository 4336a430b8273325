"""What one proxy may see (istiod's SidecarScope + exportTo): the services, VirtualServices and
DestinationRules visible from its namespace, narrowed by the Sidecar that selects it. A smaller scope means
fewer clusters, endpoints and virtual hosts pushed to that proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property

from xds.model.mesh import MeshConfig, mesh_route_choice
from xds.model.resources import DestinationRule, Service, VirtualService
from xds.model.traffic import Sidecar
from xds.proxy import ProxyIdentity

ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace default: its Sidecar is the mesh-wide default


def exported_to(export_to: tuple[str, ...], owner_namespace: str, namespace: str) -> bool:
    """exportTo: empty or '*' = everywhere, '.' = own namespace, '~' = nowhere, else namespace names."""
    if not export_to or "*" in export_to:
        return True
    if "~" in export_to:
        return False
    return namespace in export_to or ("." in export_to and owner_namespace == namespace)


def _visibility_tier(vs: VirtualService, namespace: str) -> int:
    """0: the namespace's own, not public; 1: another namespace's, exported to it by name; 2: public."""
    if not vs.export_to or "*" in vs.export_to:
        return 2
    return 0 if vs.meta.namespace == namespace else 1


def host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _labels_match(selector: tuple[tuple[str, str], ...], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector)


def sidecar_for(config: MeshConfig, proxy: ProxyIdentity) -> Sidecar | None:
    """istiod: a workload-selecting Sidecar of the proxy's namespace, else that namespace's default, else
    the root namespace's default. Oldest (here: first by name) wins among equals."""
    if not config.sidecars:
        return None
    labels = proxy.label_map
    for app in proxy.apps:
        labels = {**app.label_map, **labels}
    own = [s for s in config.sidecars if s.meta.namespace == proxy.namespace]
    for sc in own:
        if sc.workload_selector and _labels_match(sc.workload_selector, labels):
            return sc
    for sc in [*own, *(s for s in config.sidecars if s.meta.namespace == ROOT_NAMESPACE)]:
        if not sc.workload_selector:
            return sc
    return None


@dataclass(frozen=True)
class Scope:
    """The visibility of one proxy. Equal scopes see the same config: their resources are shared."""

    namespace: str
    sidecar: Sidecar | None = None

    @property
    def key(self) -> tuple[str, str]:
        sc = self.sidecar
        return (self.namespace, f"{sc.meta.namespace}/{sc.meta.name}" if sc is not None else "")

    def egress_allows(self, config_namespace: str, host: str) -> bool:
        """Sidecar egress hosts 'ns/host' ('.' = the proxy's namespace, '*' = any, '~' = none)."""
        if self.sidecar is None or not self.sidecar.egress:
            return True
        for listener in self.sidecar.egress:
            for entry in listener.hosts:
                ns, _, pattern = entry.partition("/")
                if ns == "~":
                    continue
                if ns == "*" or (ns == "." and config_namespace == self.namespace) or ns == config_namespace:
                    if host_matches(pattern, host):
                        return True
        return False


def scope_for(config: MeshConfig, proxy: ProxyIdentity) -> Scope:
    return Scope(proxy.namespace, sidecar_for(config, proxy))


class ScopedView:
    """The config as one scope sees it; computed once per scope per build."""

    def __init__(self, config: MeshConfig, scope: Scope) -> None:
        self.config = config
        self.scope = scope

    @cached_property
    def routes_by_host(self) -> dict[str, VirtualService]:
        """The sidecar VS per host among those exported to this namespace (the oldest)."""
        ns = self.scope.namespace
        visible = [v for v in self.config.virtual_services if exported_to(v.export_to, v.meta.namespace, ns)]
        # istiod VirtualServicesForGateway: those of this namespace exported to it alone, then those exported
        # to it by name, then the public ones; the oldest within each (Gateway API consumer routes rely on it)
        out: dict[str, VirtualService] = {}
        for tier in range(3):
            chosen = mesh_route_choice(v for v in visible if _visibility_tier(v, ns) == tier)
            for host, vs in chosen.items():
                out.setdefault(host, vs)
        return out

    def rule_for(self, host: str) -> DestinationRule | None:
        """istiod lookup order: the proxy's namespace, then the service's, then any exported DR."""
        ns = self.scope.namespace
        candidates = [
            dr
            for dr in self.config.destination_rules
            if dr.host == host and exported_to(dr.export_to, dr.meta.namespace, ns)
        ]
        if not candidates:
            return None
        svc = self.config.service_by_host.get(host)
        for want in (ns, svc.namespace if svc else None):
            found = next((dr for dr in candidates if dr.meta.namespace == want), None)
            if found is not None:
                return found
        return candidates[0]

    @cached_property
    def services(self) -> tuple[Service, ...]:
        ns = self.scope.namespace
        visible = [s for s in self.config.services if exported_to(s.export_to, s.namespace, ns)]
        if self.scope.sidecar is None or not self.scope.sidecar.egress:
            return tuple(visible)
        chosen = {s.host for s in visible if self.scope.egress_allows(s.namespace, s.host)}
        # destinations of the VirtualServices in scope stay reachable (their routes reference them)
        for host, vs in self.routes_by_host.items():
            if self.scope.egress_allows(vs.meta.namespace, host) and host in chosen:
                chosen |= destination_hosts(vs, self.config)
        return tuple(s for s in visible if s.host in chosen)

    @cached_property
    def route_config(self) -> MeshConfig:
        """The config as route translation sees it from this scope: the VirtualService and DestinationRule
        per host that exportTo and the namespace pick (hash policies, Dapr invoke routes). The mesh-wide
        config itself when both choices are the mesh-wide ones, so the shared resources stay shared."""
        config = self.config
        rules = {h: r for h in {dr.host for dr in config.destination_rules} if (r := self.rule_for(h))}
        routes = self.routes_by_host
        if _same_choice(routes, config.mesh_routes_by_host) and _same_choice(rules, config.rule_by_host):
            return config
        scoped = replace(config)  # same tuples; the two cached lookups are the scope's
        scoped.__dict__["mesh_routes_by_host"] = routes
        scoped.__dict__["rule_by_host"] = rules
        return scoped

    @cached_property
    def is_whole_mesh(self) -> bool:
        """True when this scope sees exactly the mesh-wide resources (they can be shared as they are)."""
        return len(self.services) == len(self.config.services) and all(
            self.rule_for(s.host) is self.config.rule_by_host.get(s.host) for s in self.services
        )


def _same_choice(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    return len(a) == len(b) and all(b.get(k) is v for k, v in a.items())


def destination_hosts(vs: VirtualService, config: MeshConfig) -> set[str]:
    from xds.translate.route import delegates_of  # route.py is heavier; imported only when scoping

    out: set[str] = set()
    for v in (vs, *delegates_of(vs, config)):
        for r in v.http:
            out |= {d.destination.host for d in r.route}
            out |= {m.destination.host for m in r.mirrors}
        for l4 in (*v.tcp, *v.tls):
            out |= {d.destination.host for d in l4.route}
    return out
