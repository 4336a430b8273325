"""Graph and semantic checks. Errors refuse the config; warnings are reported and the config is served."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

import networkx as nx

from xds.diagnostics import Diagnostic, Severity
from xds.gatewayapi.invalid import GATEWAY_API_ORIGIN
from xds.model.mesh import MeshConfig
from xds.model.resources import DestinationRule, HTTPMatch, HTTPRoute, TrafficPolicy, VirtualService
from xds.model.traffic import Sidecar
from xds.validate.graph import build_graph
from xds.validate.strict import MEANWHILE


def _err(meta, fld: str, msg: str, code: str) -> Diagnostic:  # type: ignore[no-untyped-def]
    return Diagnostic(meta.location, fld, msg, Severity.ERROR, code)


def _warn(meta, fld: str, msg: str, code: str) -> Diagnostic:  # type: ignore[no-untyped-def]
    return Diagnostic(meta.location, fld, msg, Severity.WARNING, code)


def validate(config: MeshConfig) -> list[Diagnostic]:
    g = build_graph(config)
    out: list[Diagnostic] = []
    out += _dangling(g, config)
    out += _delegate_cycles(g)
    out += _dr_conflicts(config)
    out += _vs_conflicts(config)
    out += _hostless_virtual_services(config)
    for vs in config.virtual_services:
        out += _route_checks(vs, config)
        # a host that is no registry service is served as istiod does: its own virtual host on the ports of
        # the VirtualService's services, else of its destinations (xds.translate.route.alias_virtual_hosts)
    out += _service_checks(config)
    out += _default_sidecars(config)
    return out


def _default_sidecars(config: MeshConfig) -> list[Diagnostic]:
    """istioctl analyze (DefaultSelectorAnalyzer, IST0111): more than one Sidecar without a workload selector
    in a namespace; istiod applies only one of them (here: the first by name), each is reported."""
    by_namespace: dict[str, list[Sidecar]] = defaultdict(list)
    for sidecar in config.sidecars:
        if sidecar.workload_selector is None:
            by_namespace[sidecar.meta.namespace].append(sidecar)
    out: list[Diagnostic] = []
    for namespace, found in sorted(by_namespace.items()):
        if len(found) < 2:
            continue
        names = ", ".join(f"{s.meta.namespace}/{s.meta.name}" for s in found)
        msg = (
            f"the Sidecars {names} in namespace {namespace} have no workload selector: only "
            f"{found[0].meta.namespace}/{found[0].meta.name} applies (istioctl analyze IST0111)"
        )
        out += [_warn(s.meta, "spec.workloadSelector", msg, "sidecars-without-selector") for s in found]
    return out


def _no_original_destination(config: MeshConfig) -> list[Diagnostic]:
    """istiod sends resolution NONE and loadBalancer PASSTHROUGH to the address the app dialled
    (ORIGINAL_DST). Without traffic capture the app dialled its proxy's listener, so Mecha picks a
    destination instead (xds.translate.cluster.passthrough_targets): say where connections go."""
    out: list[Diagnostic] = []
    for se in config.service_entries:
        if se.resolution != "NONE":
            continue
        singles = [a for a in se.addresses if _single_address(a)]
        if se.endpoints or se.workload_selector is not None:
            where = "its endpoints"
        elif singles:
            where = f"its addresses {', '.join(singles)}"
        else:
            where = "each host, resolved by DNS"
        msg = (
            "resolution NONE: Mecha captures no traffic, so there is no original destination to pass "
            f"through to; connections go to {where} (at the port's targetPort, else its number)"
        )
        out.append(_warn(se.meta, "spec.resolution", msg, "no-original-destination"))
        if not se.endpoints and se.workload_selector is None and not singles:
            for i, host in enumerate(se.hosts):
                if host.startswith("*"):
                    msg = (
                        f"wildcard host {host} with resolution NONE has no address to connect to: requests "
                        "for it fail (503); list endpoints or addresses, or name the exact hosts"
                    )
                    out.append(_warn(se.meta, f"spec.hosts[{i}]", msg, "no-original-destination"))
    for dr in config.destination_rules:
        for where, policy in _policies(dr):
            if policy is not None and policy.load_balancer == "PASSTHROUGH":
                msg = (
                    "loadBalancer PASSTHROUGH: Mecha captures no traffic, so there is no original "
                    "destination; the endpoints are balanced with LEAST_REQUEST instead"
                )
                out.append(_warn(dr.meta, f"{where}.loadBalancer.simple", msg, "no-original-destination"))
    return out


def _policies(dr: DestinationRule) -> list[tuple[str, TrafficPolicy | None]]:
    """Every traffic policy of a DestinationRule with its field path (portLevelSettings included)."""
    found: list[tuple[str, TrafficPolicy | None]] = [("spec.trafficPolicy", dr.traffic_policy)]
    found += [(f"spec.subsets[{i}].trafficPolicy", s.traffic_policy) for i, s in enumerate(dr.subsets)]
    out: list[tuple[str, TrafficPolicy | None]] = []
    for where, policy in found:
        out.append((where, policy))
        for j, (_, level) in enumerate(policy.port_level if policy is not None else ()):
            out.append((f"{where}.portLevelSettings[{j}]", level))
    return out


def _single_address(address: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).num_addresses == 1
    except ValueError:
        return False


def _service_checks(config: MeshConfig) -> list[Diagnostic]:
    out: list[Diagnostic] = _no_original_destination(config)
    for se in config.service_entries:
        # TCP/TLS/HTTPS... ports are served by a local TCP listener on each proxy that lists the port in
        # its node metadata `tcp_ports` (xds.translate.tcp): nothing to report
        if se.resolution != "STATIC":
            continue
        for i, ep in enumerate(se.endpoints):
            try:
                ipaddress.ip_address(ep.address)
            except ValueError:
                msg = f"{ep.address!r} is not an IP address (resolution STATIC; use DNS for hostnames)"
                out.append(_err(se.meta, f"spec.endpoints[{i}].address", msg, "bad-address"))
    for we in config.workload_entries:
        try:
            ipaddress.ip_address(we.endpoint.address)
        except ValueError:
            msg = f"{we.endpoint.address!r} is not an IP address"
            out.append(_err(we.meta, "spec.address", msg, "bad-address"))
    return out


def _dangling(g: nx.MultiDiGraph, config: MeshConfig) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for _src, dst, data in sorted(g.edges(data=True), key=lambda e: (str(e[0]), e[2]["field"])):
        if g.nodes[dst].get("present"):
            continue
        meta, fld, ref = data["meta"], data["field"], data["ref"]
        if ref == "host":
            if meta.kind == "DestinationRule":
                msg = f"host {dst[1]} matches no service in the registry"
                out.append(_warn(meta, fld, msg, "dr-dangling-host"))
            else:
                msg = f"destination host {dst[1]} matches no service ({MEANWHILE})"
                out.append(_warn(meta, fld, msg, "dangling-host"))
        elif ref == "subset":
            host, subset = dst[1], dst[2]
            if not g.nodes.get(("Service", host), {}).get("present"):
                continue  # already reported as a dangling host
            rule = config.rule_by_host.get(host)
            if rule is None:
                why = "no DestinationRule applies to this host"
            else:
                names = ", ".join(s.name for s in rule.subsets) or "none"
                why = f"DestinationRule {rule.meta.namespace}/{rule.meta.name} defines: {names}"
            msg = f"subset {subset!r} of host {host} is not defined ({why}; {MEANWHILE})"
            out.append(_warn(meta, fld, msg, "unknown-subset"))
        elif ref == "delegate":
            out.append(
                _err(
                    meta,
                    fld,
                    f"delegate VirtualService {dst[1]}/{dst[2]} does not exist",
                    "dangling-delegate",
                )
            )
        elif ref == "pubsub":
            out.append(
                _err(meta, fld, f"no Component named {dst[2]!r} in namespace {dst[1]}", "unknown-component")
            )
        elif ref == "component":
            out.append(
                _err(meta, fld, f"no Component named {dst[2]!r} in namespace {dst[1]}", "unknown-component")
            )
    # pubsubname must name a pubsub.* component
    for sub in config.subscriptions:
        comp = next(
            (
                c
                for c in config.components
                if c.meta.namespace == sub.meta.namespace and c.meta.name == sub.pubsubname
            ),
            None,
        )
        if comp is not None and not comp.type.startswith("pubsub."):
            msg = f"Component {sub.pubsubname!r} has type {comp.type!r}, not a pubsub.* component"
            out.append(_err(sub.meta, "spec.pubsubname", msg, "not-pubsub"))
    # a delegate target must be a delegate VS (no hosts)
    for _src, dst, data in g.edges(data=True):
        if data["ref"] == "delegate" and g.nodes[dst].get("present"):
            target: VirtualService = g.nodes[dst]["obj"]
            if not target.is_delegate:
                msg = f"delegate VirtualService {dst[1]}/{dst[2]} must not set hosts"
                out.append(_err(data["meta"], data["field"], msg, "bad-delegate"))
    return out


def _delegate_cycles(g: nx.MultiDiGraph) -> list[Diagnostic]:
    delegates = nx.DiGraph(
        (u, v, d) for u, v, d in g.edges(data=True) if d["ref"] == "delegate" and g.nodes[v].get("present")
    )
    out: list[Diagnostic] = []
    for cycle in sorted(nx.simple_cycles(delegates)):
        start = min(range(len(cycle)), key=lambda i: cycle[i])
        cycle = cycle[start:] + cycle[:start]  # rotate so the report is deterministic
        data = delegates.edges[cycle[0], cycle[(1) % len(cycle)]]
        path = " -> ".join(f"{n[1]}/{n[2]}" for n in [*cycle, cycle[0]])
        out.append(_err(data["meta"], data["field"], f"delegate cycle: {path}", "delegate-cycle"))
    return out


def _dr_conflicts(config: MeshConfig) -> list[Diagnostic]:
    seen: dict[tuple[str, str], object] = {}
    out: list[Diagnostic] = []
    for dr in config.destination_rules:
        key = (dr.meta.namespace, dr.host)
        if key in seen:
            first = seen[key].meta  # type: ignore[attr-defined]
            msg = (
                f"DestinationRule {first.namespace}/{first.name} ({first.location.file}) already applies to "
                f"host {dr.host} in namespace {dr.meta.namespace}"
            )
            out.append(_err(dr.meta, "spec.host", msg, "dr-conflict"))
        else:
            seen[key] = dr
    return out


def _hostless_virtual_services(config: MeshConfig) -> list[Diagnostic]:
    """No hosts makes a VirtualService a delegate (Istio); one no route delegates to would route nothing."""
    targets = {
        (r.delegate.namespace, r.delegate.name)
        for vs in config.virtual_services
        for r in vs.http
        if r.delegate is not None
    }
    return [
        _err(
            vs.meta,
            "spec.hosts",
            "missing: a VirtualService needs hosts (without hosts it is only a delegate, and no route "
            "delegates to it)",
            "no-hosts",
        )
        for vs in config.virtual_services
        if vs.is_delegate and (vs.meta.namespace, vs.meta.name) not in targets
    ]


def _sidecar_audience(vs: VirtualService, gateway: str) -> tuple[str, ...]:
    """The namespaces whose sidecars a VirtualService is exported to ("*": all). One exported to some
    namespaces only overrides public ones there (xds.translate.sidecar_scope): no conflict with them."""
    if gateway != "mesh" or not vs.export_to or "*" in vs.export_to:
        return ("*",)
    return tuple(sorted({vs.meta.namespace if e == "." else e for e in vs.export_to}))


def _vs_conflicts(config: MeshConfig) -> list[Diagnostic]:
    """A second VirtualService for a host: bound to gateways, its routes are merged after the older one's (as
    istiod's gateway builder does); for sidecars (`mesh`) only the oldest by creationTimestamp routes it."""
    claims: dict[tuple[str, str, tuple[str, ...]], VirtualService] = {}
    out: list[Diagnostic] = []
    for vs in sorted(config.virtual_services, key=lambda v: v.age_key):
        if vs.is_delegate:
            continue
        for gateway in sorted(set(vs.gateways or ("mesh",))):
            for i, host in enumerate(vs.hosts):
                first = claims.setdefault((host, gateway, _sidecar_audience(vs, gateway)), vs)
                if first is vs:
                    continue
                older = f"{first.meta.namespace}/{first.meta.name} ({first.meta.location.file})"
                if gateway == "mesh":
                    msg = (
                        f"host {host} is already routed for sidecars by the older VirtualService {older}: "
                        "these routes are not applied to sidecars (istiod: the oldest wins)"
                    )
                    out.append(_warn(vs.meta, f"spec.hosts[{i}]", msg, "vs-duplicate"))
                else:
                    msg = (
                        f"host {host} on gateway {gateway} is also routed by VirtualService {older}: "
                        "the routes are merged, the older VirtualService's first (as istiod)"
                    )
                    where = f"spec.hosts[{i}]"
                    out.append(Diagnostic(vs.meta.location, where, msg, Severity.INFO, "vs-merged"))
    return out


def is_catch_all_match(m: HTTPMatch) -> bool:
    """istiod IsCatchAllRoute: no conditions, or only uri prefix '/' / regex '.*'."""
    if m.method or m.authority or m.headers or m.without_headers or m.query_params or m.port:
        return False
    if m.uri is None:
        return True
    return (m.uri.kind == "prefix" and m.uri.value == "/") or (
        m.uri.kind == "regex" and m.uri.value in ("*", ".*")
    )


def is_catch_all(route: HTTPRoute) -> bool:
    """Translation: client-side matches were resolved for the proxy already (translate/source_matches.py)."""
    return not route.matches or any(is_catch_all_match(m) for m in route.matches)


def catches_every_client(route: HTTPRoute) -> bool:
    """A catch-all for every proxy: a match that also names the client (sourceLabels, sourceNamespace)
    exists only in the config of the proxies it selects, so the routes after it serve all the others."""
    return not route.matches or any(
        is_catch_all_match(m) and not m.source_labels and not m.source_namespace for m in route.matches
    )


def _route_checks(vs: VirtualService, config: MeshConfig) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    catch_all_at: int | None = None
    seen_matches: dict[HTTPMatch, str] = {}
    for route in vs.http:
        base = f"spec.http[{route.index}]"
        if catch_all_at is not None:
            msg = f"unreachable: spec.http[{catch_all_at}] before it matches every request"
            out.append(_warn(vs.meta, base, msg, "unreachable-route"))
        for j, m in enumerate(route.matches):
            key = HTTPMatch(**{f: getattr(m, f) for f in m.__slots__ if f != "name"})  # type: ignore[attr-defined]
            if key in seen_matches:
                msg = f"unreachable: same match as {seen_matches[key]}"
                out.append(_warn(vs.meta, f"{base}.match[{j}]", msg, "duplicate-match"))
            else:
                seen_matches[key] = f"{base}.match[{j}]"
        if catch_all_at is None and catches_every_client(route):
            catch_all_at = route.index
        out += _weights(vs, route)
        out += _ports(vs, route, config)
        if not route.route and route.delegate is None and not route.terminal:
            out.append(
                _err(vs.meta, base, "route has no destination (set route, delegate or redirect)", "no-route")
            )
    return out


def _weights(vs: VirtualService, route: HTTPRoute) -> list[Diagnostic]:
    weights = [d.weight for d in route.route]
    if vs.meta.origin == GATEWAY_API_ORIGIN:
        return []  # converted from Gateway API: relative weights (Envoy takes them as they are)
    if all(w is None for w in weights):
        return []  # istiod normalises: a single destination takes 100, several split evenly
    if any(w is not None and w < 0 for w in weights):
        return [
            _err(vs.meta, f"spec.http[{route.index}].route", "weights must not be negative", "bad-weight")
        ]
    total = sum(w or 0 for w in weights)
    if total != 100 and not (len(weights) == 1):
        msg = f"destination weights sum to {total}, not 100"
        return [_err(vs.meta, f"spec.http[{route.index}].route", msg, "bad-weight")]
    return []


def _ports(vs: VirtualService, route: HTTPRoute, config: MeshConfig) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for j, rd in enumerate(route.route):
        dest = rd.destination
        svc = config.service_by_host.get(dest.host)
        if svc is None or dest.port is None:
            continue
        if svc.port(dest.port) is None:
            exposed = ", ".join(str(p.number) for p in svc.ports) or "none"
            msg = f"port {dest.port} is not exposed by {dest.host} (ports: {exposed}; {MEANWHILE})"
            out.append(
                _warn(vs.meta, f"spec.http[{route.index}].route[{j}].destination.port", msg, "unknown-port")
            )
    return out


def group_by_severity(diags: list[Diagnostic]) -> dict[Severity, list[Diagnostic]]:
    out: dict[Severity, list[Diagnostic]] = defaultdict(list)
    for d in diags:
        out[d.severity].append(d)
    return out
