"""Gateway API -> the Istio model the translator already serves, as istiod's conversion.go does, plus status.

Per Mecha Gateway (gatewayClassName is Mecha's: kinds.py):
- one Istio Gateway with the same namespace/name: one HTTP server per port of its accepted listeners, hosts
  `*` (hostnames, allowedRoutes and listener isolation are applied here), selector
  `gateway.networking.k8s.io/gateway-name: <name>` (Istio's label for its Gateway API deployments). A gateway
  proxy serves it when its node metadata names `<namespace>/<name>` in `gateways`, or carries that label.
- one VirtualService per hostname it serves, bound to that Gateway, holding every attached route of that
  hostname in the spec's precedence order; each route's matches carry its listener port, so a hostname's
  routes on one port never show on another. A hostname that only exists on some ports gets, on the others,
  the routes that port would have served it with (its wildcard or `*` routes), so adding a virtual host for
  it never changes what those ports answer.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from xds.diagnostics import Diagnostic, Location, Severity
from xds.gatewayapi import certificates, hostnames, objects
from xds.gatewayapi.backendtls import apply_policies
from xds.gatewayapi.documents import GatewayApiInputs
from xds.gatewayapi.invalid import GATEWAY_API_ORIGIN
from xds.gatewayapi.kinds import (
    BUILTIN_CLASSES,
    CONTROLLER_NAME,
    CONTROLLER_NAMES,
    GROUP,
    TCP_ROUTE,
    TLS_ROUTE,
)
from xds.gatewayapi.l4routes import l4_routes
from xds.gatewayapi.meshroutes import MeshRoutes, Target, is_service_parent, rule_outcomes
from xds.gatewayapi.routes import Resolver, RuleOutcome, SortKey, for_listener
from xds.gatewayapi.status import (
    GRPC_ROUTE_KIND,
    HTTP_ROUTE_KIND,
    Condition,
    ListenerStatus,
    ObjectStatus,
    ParentStatus,
    failed,
    ok,
    pending,
)
from xds.model.resources import CarriedResource, DestinationRule, HTTPRoute, Meta, Service, VirtualService
from xds.model.traffic import L4Route

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
ISTIO_API = "networking.istio.io/v1"
SERVED_PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP")  # UDP and implementation-specific ones are reported
# the route kinds a listener carries by default, by protocol (TLS: Passthrough; Terminate is not served)
_DEFAULT_KINDS = {
    "HTTP": [HTTP_ROUTE_KIND, GRPC_ROUTE_KIND],  # GRPCRoute over h2c
    "HTTPS": [HTTP_ROUTE_KIND, GRPC_ROUTE_KIND],
    "TLS": [(GROUP, TLS_ROUTE)],
    "TCP": [(GROUP, TCP_ROUTE)],
}


@dataclass
class Conversion:
    gateways: list[CarriedResource] = field(default_factory=list)  # Istio Gateways, carried like written ones
    virtual_services: list[VirtualService] = field(default_factory=list)
    destination_rules: list[DestinationRule] = field(default_factory=list)  # BackendTLSPolicies
    statuses: list[ObjectStatus] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass
class _Listener:
    spec: objects.Listener
    status: ListenerStatus
    accepted: bool
    denied_because: str = ""  # why routes cannot attach (not accepted)
    credential: str = ""  # HTTPS: the credentialName its certificate comes from ("" = none usable)
    # route kind -> the hostnames its accepted routes serve here: HTTPRoute and GRPCRoute may not share one
    claimed: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # kind -> [(host, route)]

    def allows(self, kind: str) -> bool:
        return (GROUP, kind) in self.status.supported_kinds

    def taken_by_other_kind(self, kind: str, hosts: list[str]) -> tuple[str, str] | None:
        """(host, route) of the other route kind whose hostnames intersect hosts (the spec rejects the
        newer route: routes are converted oldest first)."""
        for other, claims in self.claimed.items():
            if other == kind:
                continue
            for host, ref in claims:
                if any(hostnames.intersection(host, h) is not None for h in hosts):
                    return host, f"{other} {ref}"
        return None


@dataclass
class _Gateway:
    spec: objects.Gateway
    listeners: list[_Listener]
    # port -> hostname -> the routes served for it, with their precedence keys (an empty list: 404)
    routes: dict[int, dict[str, list[tuple[SortKey, HTTPRoute]]]] = field(default_factory=dict)
    served: set[tuple[int, str, str]] = field(default_factory=set)  # (port, hostname, route) added
    l4: list[tuple[str, L4Route]] = field(default_factory=list)  # ("tls" | "tcp", route), oldest route first
    backends: set[str] = field(default_factory=set)  # hosts its attached routes send to (policy ancestors)


# Not a reason the spec names (it names none for this case): a newer route of the other kind (HTTPRoute /
# GRPCRoute) whose hostnames intersect those an older route serves on the listener is not accepted there.
HOSTNAME_CONFLICT = "HostnameConflict"
_RANK = {
    "": 0,
    "NotAllowedByListeners": 1,
    HOSTNAME_CONFLICT: 1,
    "NoMatchingListenerHostname": 2,
    "NoMatchingParent": 4,
}


def _warn(where: Location, fld: str, message: str, code: str) -> Diagnostic:
    return Diagnostic(where, fld, message, Severity.WARNING, code)


class _Converter:
    def __init__(
        self, inputs: GatewayApiInputs, services: Mapping[str, Service], available: Collection[str] | None
    ) -> None:
        self.inputs = inputs
        self.available = available
        self.services = services
        self.resolver = Resolver(dict(services), inputs.grants)
        self.mesh = MeshRoutes(services, tuple(inputs.grants))  # routes attached to Services (GAMMA)
        self.out = Conversion()
        documented = {c.meta.name: c for c in inputs.classes}
        self.ours = {n for n in BUILTIN_CLASSES if n not in documented}
        self.ours |= {n for n, c in documented.items() if c.controller_name in CONTROLLER_NAMES}
        self.gateways: dict[tuple[str, str], _Gateway] = {}

    def run(self) -> Conversion:
        for c in self.inputs.classes:
            if c.meta.name in self.ours:
                accepted = ok("Accepted", "Accepted", f"Handled by {CONTROLLER_NAME}")
                self.out.statuses.append(ObjectStatus(c.meta, [accepted]))
        for gw in self.inputs.gateways:
            self._gateway(gw)
        routes: list[objects.Route] = [*self.inputs.routes, *self.inputs.grpc_routes, *self.inputs.l4_routes]
        for route in sorted(routes, key=lambda r: (r.meta.created, r.meta.ref, r.meta.kind)):
            self._route(route)
        for state in self.gateways.values():
            self._emit(state)
        self.out.virtual_services += self.mesh.virtual_services()
        ancestors: dict[str, list[objects.ObjectMeta]] = {}
        for state in self.gateways.values():
            for host in state.backends:
                ancestors.setdefault(host, []).append(state.spec.meta)
        applied = apply_policies(self.inputs.tls_policies, self.inputs.config_maps, self.services, ancestors)
        self.out.destination_rules += applied.rules
        self.out.statuses += applied.statuses
        self.out.diagnostics += applied.diagnostics
        return self.out

    # ---- Gateways ------------------------------------------------------------------------------------

    def _gateway(self, gw: objects.Gateway) -> None:
        if gw.class_name not in self.ours:
            self.out.statuses.append(pending(gw.meta))
            classes = ", ".join(sorted(self.ours))
            msg = f"gatewayClassName {gw.class_name!r} is not Mecha's (classes: {classes}): "
            self.out.diagnostics.append(
                Diagnostic(
                    gw.meta.location,
                    "spec.gatewayClassName",
                    msg + "not served",
                    Severity.INFO,
                    "gateway-api-class",
                )
            )
            return
        protocols_by_port: dict[int, set[str]] = {}
        for ls in gw.listeners:
            protocols_by_port.setdefault(ls.port, set()).add(ls.protocol)
        listeners = [self._listener(gw, ls, len(protocols_by_port[ls.port]) > 1) for ls in gw.listeners]
        self.gateways[(gw.meta.namespace, gw.meta.name)] = _Gateway(gw, listeners)

    def _listener(self, gw: objects.Gateway, spec: objects.Listener, conflicted: bool) -> _Listener:
        default = _DEFAULT_KINDS.get(spec.protocol, [])
        kinds = default if spec.allowed_kinds is None else list(spec.allowed_kinds)
        supported = [k for k in kinds if k in default]  # the route kinds this listener can carry
        accepted = ok("Accepted", "Accepted", "No errors found")
        conflict = Condition("Conflicted", "False", "NoConflicts", "No conflicts")
        refs = ok("ResolvedRefs", "ResolvedRefs", "No errors found")
        why = ""
        if conflicted:  # not distinct: none of the listeners sharing the port is accepted
            why = f"port {spec.port} is used by listeners of different protocols"
            accepted = failed("Accepted", "PortUnavailable", why)
            conflict = Condition("Conflicted", "True", "ProtocolConflict", why)
        if spec.protocol not in SERVED_PROTOCOLS:
            why = f"protocol {spec.protocol} is not served (Mecha serves HTTP, HTTPS, TLS and TCP listeners)"
            accepted = failed("Accepted", "UnsupportedProtocol", why)
        elif spec.protocol == "TLS" and spec.tls_mode == "Terminate":
            why = "protocol TLS with tls.mode Terminate is not served (TLSRoute: use mode Passthrough)"
            accepted = failed("Accepted", "UnsupportedValue", why)
            supported = []
        credential = ""
        if spec.protocol == "HTTPS" and not conflicted:
            found = certificates.resolve(gw, spec, self.inputs.grants, self.available)
            credential = found.credential
            if found.problem is not None:
                refs = found.problem
            for note in found.notes:
                self.out.diagnostics.append(
                    _warn(
                        gw.meta.location,
                        f"spec.listeners[{spec.index}].tls",
                        note,
                        "gateway-api-approximated",
                    )
                )
        invalid = [k for k in kinds if k not in supported]
        if invalid and spec.allowed_kinds is not None and refs.status == "True":
            names = ", ".join(f"{g}/{k}" for g, k in invalid)
            refs = failed("ResolvedRefs", "InvalidRouteKinds", f"unsupported route kinds: {names}")
        is_accepted = accepted.status == "True"
        programmed = (
            ok("Programmed", "Programmed", "No errors found")
            if is_accepted and (spec.protocol != "HTTPS" or credential)
            else failed("Programmed", "Invalid", why or f"no usable certificate: {refs.message}")
        )
        if is_accepted and refs.reason in (certificates.INVALID, certificates.NOT_PERMITTED):
            self.out.diagnostics.append(
                _warn(
                    gw.meta.location,
                    f"spec.listeners[{spec.index}].tls.certificateRefs",
                    f"listener {spec.name}: {refs.reason}: {refs.message}",
                    "gateway-api-ref",
                )
            )
        if spec.allowed_from == "Selector" and spec.selector is None:
            msg = f"listener {spec.name}: from: Selector without a selector matches no namespace"
            self.out.diagnostics.append(
                _warn(
                    gw.meta.location,
                    f"spec.listeners[{spec.index}].allowedRoutes",
                    msg,
                    "gateway-api-listener",
                )
            )
        if why:
            self.out.diagnostics.append(
                _warn(
                    gw.meta.location,
                    f"spec.listeners[{spec.index}]",
                    f"listener {spec.name}: {why}",
                    "gateway-api-listener",
                )
            )
        status = ListenerStatus(spec.name, supported, [accepted, programmed, conflict, refs])
        return _Listener(
            spec,
            status,
            is_accepted,
            f"listener {spec.name} is not accepted: {why}" if why else "",
            credential=credential,
        )

    # ---- routes --------------------------------------------------------------------------------------

    def _route(self, route: objects.Route) -> None:
        # a route attached only to Services is reported as the mesh converts it (no ReferenceGrant needed)
        mesh_only = bool(route.parent_refs) and all(is_service_parent(p) for p in route.parent_refs)
        outcomes = rule_outcomes(route, self.mesh.resolver if mesh_only else self.resolver)
        kept = [o for o in outcomes if not o.dropped]
        where = route.meta.location
        for index, o in enumerate(outcomes):  # outcomes are in rule order: index is the rule's
            if o.dropped:
                msg = f"rule not served: {o.dropped}"
                self.out.diagnostics.append(
                    _warn(where, f"spec.rules[{index}]", msg, "gateway-api-unsupported")
                )
            for err in o.ref_errors:
                self.out.diagnostics.append(
                    _warn(where, err.field, f"{err.reason}: {err.message}", "gateway-api-ref")
                )
            for note in o.approximations:
                self.out.diagnostics.append(
                    _warn(where, f"spec.rules[{index}].backendRefs", note, "gateway-api-approximated")
                )
        parents: list[ParentStatus] = []
        for ref in route.parent_refs:
            conditions = self._parent(route, ref, outcomes, kept)
            if conditions is not None:
                parents.append(ParentStatus(dict(ref.written), conditions))
        self.out.statuses.append(ObjectStatus(route.meta, parents=parents))

    def _parent(
        self,
        route: objects.Route,
        ref: objects.ParentRef,
        outcomes: list[RuleOutcome],
        kept: list[RuleOutcome],
    ) -> list[Condition] | None:
        where, at = route.meta.location, f"spec.parentRefs[{ref.index}]"
        if not ref.is_gateway:
            if is_service_parent(ref):  # GAMMA: a mesh route for the Service's clients (meshroutes.py)
                return self._mesh_parent(route, ref)
            msg = f"parent {ref.group}/{ref.kind} is not a kind Mecha attaches routes to: ignored"
            self.out.diagnostics.append(Diagnostic(where, at, msg, Severity.INFO, "gateway-api-parent"))
            return None
        state = self.gateways.get((ref.namespace, ref.name))
        if state is None:
            known = any(
                (g.meta.namespace, g.meta.name) == (ref.namespace, ref.name) for g in self.inputs.gateways
            )
            if known:
                return None  # another controller's Gateway: its controller writes this parent's status
            msg = f"Gateway {ref.namespace}/{ref.name} not found"
            self.out.diagnostics.append(
                _warn(where, at, f"{msg}: the route is not attached", "gateway-api-parent")
            )
            return [failed("Accepted", "NoMatchingParent", msg), self._resolved(outcomes)]
        attached: list[tuple[_Listener, list[str]]] = []
        denials: list[tuple[str, str]] = []
        for listener in state.listeners:
            reason, message, hosts = self._attach(route, ref, state, listener)
            if reason:
                denials.append((reason, message))
            else:
                attached.append((listener, hosts))
        if not attached:
            best = min(_RANK.get(r, 3) for r, _ in denials)
            reason = next(r for r, _ in denials if _RANK.get(r, 3) == best)
            message = "; ".join(dict.fromkeys(m for r, m in denials if r == reason))
            self.out.diagnostics.append(
                _warn(
                    where,
                    at,
                    f"not attached to Gateway {ref.namespace}/{ref.name}: {reason}: {message}",
                    "gateway-api-parent",
                )
            )
            return [failed("Accepted", reason, message), self._resolved(outcomes)]
        conditions = [self._accepted(outcomes, kept, len(attached)), self._resolved(outcomes)]
        if conditions[0].status == "True":
            for listener, hosts in attached:
                listener.status.attached_routes += 1
                claims = listener.claimed.setdefault(route.meta.kind, [])
                claims += [(h, route.meta.ref) for h in hosts]
                self._serve(state, listener, hosts, route, kept)
        partial = self._partially_invalid(route, outcomes, kept)
        return conditions + ([partial] if partial is not None else [])

    def _mesh_parent(self, route: objects.Route, ref: objects.ParentRef) -> list[Condition]:
        where, at = route.meta.location, f"spec.parentRefs[{ref.index}]"
        outcomes = rule_outcomes(route, self.mesh.resolver)
        kept = [o for o in outcomes if not o.dropped]
        target = self.mesh.target(route, ref)
        if not isinstance(target, Target):
            msg = f"not attached to Service {ref.namespace}/{ref.name}: {target.reason}: {target.message}"
            self.out.diagnostics.append(_warn(where, at, msg, "gateway-api-parent"))
            return [target, self._resolved(outcomes)]
        conditions = [self._accepted(outcomes, kept, 1), self._resolved(outcomes)]
        if conditions[0].status == "True":
            self.mesh.serve(route, target, kept)
        partial = self._partially_invalid(route, outcomes, kept)
        return conditions + ([partial] if partial is not None else [])

    def _attach(
        self, route: objects.Route, ref: objects.ParentRef, state: _Gateway, listener: _Listener
    ) -> tuple[str, str, list[str]]:
        """("", "", hosts) when the route attaches to the listener, else (reason, message, [])."""
        spec = listener.spec
        if ref.port is not None and ref.port != spec.port:
            return "NoMatchingParent", f"port {ref.port} not found", []
        if ref.section and ref.section != spec.name:
            return "NoMatchingParent", f"sectionName {ref.section!r} not found", []
        if not listener.accepted:
            return "NotAllowedByListeners", listener.denied_because, []
        hosts = hostnames.served_hosts(spec.hostname, route.hostnames)
        if not hosts:
            return "NoMatchingListenerHostname", f"no hostnames matched parent hostname {spec.hostname!r}", []
        gateway_ns = state.spec.meta.namespace
        if spec.allowed_from == "Selector" and not self._selected(spec, route.meta.namespace):
            msg = (
                f"namespace {route.meta.namespace!r} is not selected by listener {spec.name} (from: Selector)"
            )
            return "NotAllowedByListeners", msg, []
        if spec.allowed_from == "Same" and route.meta.namespace != gateway_ns:
            msg = f"namespace {route.meta.namespace!r} is not allowed by listener {spec.name} (from: Same)"
            return "NotAllowedByListeners", msg, []
        kind = route.meta.kind
        if not listener.allows(kind):
            return "NotAllowedByListeners", f"kind {kind} is not allowed by listener {spec.name}", []
        others = [
            o.spec.hostname
            for o in state.listeners
            if o is not listener
            and o.accepted
            and o.spec.port == spec.port
            and o.spec.protocol == spec.protocol
        ]
        served = [h for h in hosts if hostnames.isolated(h, spec.hostname, others)]
        taken = listener.taken_by_other_kind(kind, served)
        if taken is not None:
            msg = f"listener {spec.name}: hostname {taken[0]!r} is already served by {taken[1]}"
            return HOSTNAME_CONFLICT, f"{msg} (HTTPRoute and GRPCRoute may not share a hostname)", []
        return "", "", served

    def _selected(self, spec: objects.Listener, namespace: str) -> bool:
        """allowedRoutes from: Selector: the namespace's Namespace document has labels the selector
        matches; a namespace without a Namespace document is never selected."""
        found = self.inputs.namespaces.get(namespace)
        if spec.selector is None or found is None:
            return False
        return spec.selector.matches(dict(found.labels))

    @staticmethod
    def _accepted(outcomes: list[RuleOutcome], kept: list[RuleOutcome], listeners: int) -> Condition:
        if outcomes and not kept:
            reasons = "; ".join(dict.fromkeys(o.dropped for o in outcomes))
            return failed("Accepted", "UnsupportedValue", f"no rule can be served: {reasons}")
        suffix = f", bound to {listeners} listeners" if listeners > 1 else ""
        return ok("Accepted", "Accepted", f"Route was valid{suffix}")

    @staticmethod
    def _resolved(outcomes: list[RuleOutcome]) -> Condition:
        errors = [e for o in outcomes for e in o.ref_errors]
        if not errors:
            return ok("ResolvedRefs", "ResolvedRefs", "All references resolved")
        return failed("ResolvedRefs", errors[0].reason, "; ".join(dict.fromkeys(e.message for e in errors)))

    @staticmethod
    def _partially_invalid(
        route: objects.Route, outcomes: list[RuleOutcome], kept: list[RuleOutcome]
    ) -> Condition | None:
        if not kept or len(kept) == len(outcomes):
            return None
        dropped = [f"rules[{i}]: {o.dropped}" for i, o in enumerate(outcomes) if o.dropped]
        return ok("PartiallyInvalid", "UnsupportedValue", "Dropped Rule(s): " + "; ".join(dropped))

    @staticmethod
    def _serve(
        state: _Gateway,
        listener: _Listener,
        hosts: list[str],
        route: objects.Route,
        kept: list[RuleOutcome],
    ) -> None:
        port = listener.spec.port
        for outcome in kept:
            state.backends.update(d.destination.host for d in getattr(outcome, "destinations", ()))
            for _, http in outcome.routes:
                state.backends.update(d.destination.host for d in http.route)
                state.backends.update(m.destination.host for m in http.mirrors)
        if isinstance(route, objects.L4Route):
            tls = route.meta.kind == TLS_ROUTE
            state.l4 += [("tls" if tls else "tcp", r) for r in l4_routes(port, hosts, kept, tls)]
            return
        by_host = state.routes.setdefault(port, {})
        for host in hosts:
            if (port, host, route.meta.ref) in state.served:
                continue  # attached through two listeners of one port: its routes once
            state.served.add((port, host, route.meta.ref))
            entries = by_host.setdefault(host, [])
            for outcome in kept:
                entries.extend(outcome.routes)

    # ---- output --------------------------------------------------------------------------------------

    def _emit(self, state: _Gateway) -> None:
        gw = state.spec
        served = [
            ls for ls in state.listeners if ls.accepted and (ls.spec.protocol != "HTTPS" or ls.credential)
        ]
        if gw.parameters_ref:
            served = []  # a Gateway that is not Accepted is not programmed
        for ls in served:  # a listener hostname without routes still owns its requests: 404
            if ls.spec.protocol in ("HTTP", "HTTPS"):
                state.routes.setdefault(ls.spec.port, {}).setdefault(ls.spec.hostname or hostnames.ANY, [])
        self.out.statuses.append(self._gateway_status(state))
        if not served:
            return
        ports = sorted(state.routes)
        spec = {"selector": {GATEWAY_NAME_LABEL: gw.meta.name}, "servers": _servers(served)}
        meta = Meta("Gateway", gw.meta.namespace, gw.meta.name, gw.meta.location)
        self.out.gateways.append(CarriedResource(meta, ISTIO_API, json.dumps(spec, sort_keys=True)))
        if state.l4:
            name = f"gateway-api.{gw.meta.name}.l4"
            where = Location(
                gw.meta.location.file, gw.meta.location.document, "VirtualService", gw.meta.namespace, name
            )
            self.out.virtual_services.append(
                VirtualService(
                    meta=Meta("VirtualService", gw.meta.namespace, name, where, origin=GATEWAY_API_ORIGIN),
                    hosts=(hostnames.ANY,),
                    gateways=(gw.meta.ref,),
                    tls=tuple(
                        replace(r, index=i) for i, r in enumerate(r for k, r in state.l4 if k == "tls")
                    ),
                    tcp=tuple(
                        replace(r, index=i) for i, r in enumerate(r for k, r in state.l4 if k == "tcp")
                    ),
                    created=gw.meta.created,
                )
            )
        all_hosts = sorted({h for by_host in state.routes.values() for h in by_host})
        secure_ports = {ls.spec.port for ls in served if ls.spec.protocol == "HTTPS"}
        for host in all_hosts:
            http: list[HTTPRoute] = []
            for port in ports:
                by_host = state.routes[port]
                chosen = hostnames.most_specific(host, list(by_host))
                if chosen is not None:
                    scheme = "https" if port in secure_ports else "http"
                    http += [
                        for_listener(r, port, scheme) for _, r in sorted(by_host[chosen], key=lambda e: e[0])
                    ]
            name = f"gateway-api.{gw.meta.name}.{_slug(host)}"
            where = Location(
                gw.meta.location.file, gw.meta.location.document, "VirtualService", gw.meta.namespace, name
            )
            self.out.virtual_services.append(
                VirtualService(
                    meta=Meta("VirtualService", gw.meta.namespace, name, where, origin=GATEWAY_API_ORIGIN),
                    hosts=(host,),
                    gateways=(gw.meta.ref,),
                    http=tuple(_indexed(http)),
                    created=gw.meta.created,
                )
            )

    def _gateway_status(self, state: _Gateway) -> ObjectStatus:
        listeners = state.listeners
        valid = sum(1 for ls in listeners if ls.accepted)
        if valid == len(listeners):
            accepted = ok("Accepted", "Accepted", "Resource accepted")
        elif valid:
            accepted = ok(
                "Accepted", "ListenersNotValid", "One or more of the Gateway's listeners are invalid"
            )
        else:
            accepted = failed("Accepted", "ListenersNotValid", "None of the Gateway's listeners are valid")
        programmed = (
            ok(
                "Programmed",
                "Programmed",
                "Resource programmed: served by the gateway proxies that select it",
            )
            if valid
            else failed("Programmed", "Invalid", "no listener can be served")
        )
        if state.spec.parameters_ref:
            why = f"infrastructure.parametersRef {state.spec.parameters_ref}: Mecha reads no parameters kind"
            accepted = failed("Accepted", "InvalidParameters", why)
            programmed = failed("Programmed", "Invalid", "the Gateway is not accepted")
        return ObjectStatus(
            state.spec.meta, [accepted, programmed], listeners=[ls.status for ls in listeners]
        )


def _servers(served: list[_Listener]) -> list[dict[str, object]]:
    """The Istio Gateway servers of the served listeners: one HTTP server per port (hostnames are the
    VirtualServices' business), one per HTTPS listener (its SNI name and certificate), one per TLS
    Passthrough listener (its SNI name), one per TCP listener."""
    out: list[dict[str, object]] = []
    http_ports = sorted({ls.spec.port for ls in served if ls.spec.protocol == "HTTP"})
    for p in http_ports:
        out.append({"port": {"number": p, "name": f"http-{p}", "protocol": "HTTP"}, "hosts": [hostnames.ANY]})
    for ls in served:
        spec = ls.spec
        port = {"number": spec.port, "name": f"{spec.protocol.lower()}-{spec.port}-{spec.name}"}
        hosts = [spec.hostname or hostnames.ANY]
        if spec.protocol == "HTTPS":
            tls = {"mode": "SIMPLE", "credentialName": ls.credential}
            out.append({"port": {**port, "protocol": "HTTPS"}, "hosts": hosts, "tls": tls})
        elif spec.protocol == "TLS":
            out.append({"port": {**port, "protocol": "TLS"}, "hosts": hosts, "tls": {"mode": "PASSTHROUGH"}})
        elif spec.protocol == "TCP":
            out.append({"port": {**port, "protocol": "TCP"}, "hosts": hosts})
    return out


def _indexed(routes: list[HTTPRoute]) -> list[HTTPRoute]:
    return [replace(r, index=i) for i, r in enumerate(routes)]


def _slug(host: str) -> str:
    if host == hostnames.ANY:
        return "any-host"
    return host.replace("*", "wildcard")


def convert(
    inputs: GatewayApiInputs, services: Mapping[str, Service], available: Collection[str] | None = None
) -> Conversion:
    """Mecha's Gateways and the routes attached to them -> Istio Gateways, VirtualServices and status.
    services: the registry by host (routes to a host missing there are unresolved: BackendNotFound);
    available: the credentials found (certificates.py; None: not known, every one assumed present)."""
    return _Converter(inputs, services, available).run()
