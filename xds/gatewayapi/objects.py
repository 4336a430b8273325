"""Typed, frozen forms of GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant and Namespace
documents (after the schema and CRD checks), with the CRDs' defaults applied:
what conversion and status read. No Envoy and no Istio model here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from xds.diagnostics import Location
from xds.gatewayapi.kinds import GROUP


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    kind: str
    namespace: str
    name: str
    api_version: str
    generation: int = 1  # metadata.generation (the store keeps it as the API server does): observedGeneration
    created: str = ""  # metadata.creationTimestamp: the older route wins precedence ties
    location: Location = field(default_factory=Location, compare=False, hash=False)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class GatewayClass:
    meta: ObjectMeta
    controller_name: str


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """metav1.LabelSelector: every matchLabels pair and every expression must hold (empty: everything)."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (key, operator, values)

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if (op == "Exists") != present and op in ("Exists", "DoesNotExist"):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Namespace:
    """A Namespace document: the labels allowedRoutes selectors match (with the API server's automatic
    kubernetes.io/metadata.name label)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    location: Location = field(default_factory=Location, compare=False, hash=False)


NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True, slots=True)
class ReferenceGrant:
    meta: ObjectMeta
    sources: tuple[tuple[str, str, str], ...]  # from: (group, kind, namespace)
    targets: tuple[tuple[str, str, str], ...]  # to: (group, kind, name; "" = every name)


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A listener tls.certificateRefs entry (group "" and kind Secret by default)."""

    index: int
    group: str
    kind: str
    namespace: str  # defaulted to the Gateway's namespace
    name: str


@dataclass(frozen=True, slots=True)
class Listener:
    index: int
    name: str
    port: int
    protocol: str
    hostname: str = ""  # "" = any host
    allowed_from: str = "Same"  # allowedRoutes.namespaces.from: Same | All | Selector
    selector: LabelSelector | None = None  # allowedRoutes.namespaces.selector (None: matches nothing)
    # allowedRoutes.kinds as (group, kind); None = unset (the protocol's default kinds)
    allowed_kinds: tuple[tuple[str, str], ...] | None = None
    tls_mode: str = ""  # tls.mode: Terminate | Passthrough ("" = no tls block)
    certificate_refs: tuple[SecretRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Gateway:
    meta: ObjectMeta
    class_name: str
    listeners: tuple[Listener, ...]
    # spec.infrastructure.parametersRef as "group/kind/name": Mecha reads no parameters kind, so any
    # reference makes the Gateway not Accepted (InvalidParameters), as the spec says for unsupported kinds
    parameters_ref: str = ""


@dataclass(frozen=True, slots=True)
class ParentRef:
    index: int
    group: str
    kind: str
    namespace: str  # defaulted to the route's namespace
    name: str
    section: str = ""
    port: int | None = None
    written: tuple[tuple[str, Any], ...] = ()  # the reference as written: status.parents[].parentRef

    @property
    def is_gateway(self) -> bool:
        return self.group == GROUP and self.kind == "Gateway"


@dataclass(frozen=True, slots=True)
class PathMatch:
    kind: str  # Exact | PathPrefix | RegularExpression
    value: str


@dataclass(frozen=True, slots=True)
class ValueMatch:
    kind: str  # Exact | RegularExpression
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Match:
    index: int
    path: PathMatch
    headers: tuple[ValueMatch, ...] = ()
    query_params: tuple[ValueMatch, ...] = ()
    method: str = ""


@dataclass(frozen=True, slots=True)
class HeaderFilter:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PathModifier:
    kind: str  # ReplaceFullPath | ReplacePrefixMatch
    value: str


@dataclass(frozen=True, slots=True)
class BackendRef:
    group: str
    kind: str
    name: str
    namespace: str  # "" = the route's namespace
    port: int | None = None
    weight: int = 1
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True, slots=True)
class Filter:
    index: int
    type: str
    request_headers: HeaderFilter | None = None
    response_headers: HeaderFilter | None = None
    mirror: BackendRef | None = None
    mirror_per_million: int = 1_000_000  # percent / fraction of requests mirrored
    redirect_scheme: str = ""
    redirect_hostname: str = ""
    redirect_port: int | None = None
    redirect_status: int = 302
    rewrite_hostname: str = ""
    path: PathModifier | None = None  # RequestRedirect / URLRewrite path


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    name: str
    matches: tuple[Match, ...]
    filters: tuple[Filter, ...] = ()
    backend_refs: tuple[BackendRef, ...] = ()
    request_timeout: timedelta | None = None
    backend_request_timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    meta: ObjectMeta
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class GRPCMatch:
    index: int
    kind: str = "Exact"  # method match type: Exact | RegularExpression
    service: str = ""  # "" = any service
    method: str = ""  # "" = any method
    has_method_match: bool = False  # False: every service and method
    headers: tuple[ValueMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class GRPCRule:
    index: int
    name: str
    matches: tuple[GRPCMatch, ...]
    filters: tuple[Filter, ...] = ()
    backend_refs: tuple[BackendRef, ...] = ()


@dataclass(frozen=True, slots=True)
class GRPCRoute:
    meta: ObjectMeta
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[GRPCRule, ...]


@dataclass(frozen=True, slots=True)
class L4Rule:
    index: int
    name: str
    backend_refs: tuple[BackendRef, ...] = ()


@dataclass(frozen=True, slots=True)
class L4Route:
    """A TLSRoute (hostnames: SNI names) or a TCPRoute (no hostnames)."""

    meta: ObjectMeta
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[L4Rule, ...]


Route = HTTPRoute | GRPCRoute | L4Route


@dataclass(frozen=True, slots=True)
class BackendTLSPolicy:
    meta: ObjectMeta
    targets: tuple[tuple[str, str, str, str], ...]  # targetRefs: (group, kind, name, sectionName)
    ca_refs: tuple[tuple[str, str, str], ...]  # validation.caCertificateRefs: (group, kind, name)
    well_known: str  # validation.wellKnownCACertificates ("" = unset)
    hostname: str  # SNI, and the name the certificate must carry unless subject_alt_names are set
    subject_alt_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigMap:
    """A ConfigMap document: its data (the `ca.crt` key is the CA bundle BackendTLSPolicies name)."""

    namespace: str
    name: str
    data: tuple[tuple[str, str], ...]
    location: Location = field(default_factory=Location, compare=False, hash=False)


_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration(text: str | None) -> timedelta | None:
    """A GEP-2257 duration (pattern-checked: 1-4 parts of digits + h/m/s/ms)."""
    if text is None:
        return None
    seconds = sum(float(n) * _UNIT[u] for n, u in re.findall(r"([0-9]+)(ms|h|m|s)", text))
    return timedelta(seconds=seconds)


def meta_of(kind: str, api_version: str, location: Location, body: dict[str, Any]) -> ObjectMeta:
    metadata = body.get("metadata") or {}
    generation = metadata.get("generation")
    return ObjectMeta(
        kind=kind,
        namespace=location.namespace,
        name=location.name,
        api_version=api_version,
        generation=generation if isinstance(generation, int) and generation > 0 else 1,
        created=str(metadata.get("creationTimestamp") or ""),
        location=location,
    )


def gateway_class(meta: ObjectMeta, spec: dict[str, Any]) -> GatewayClass:
    return GatewayClass(meta, str(spec.get("controllerName") or ""))


def gateway(meta: ObjectMeta, spec: dict[str, Any]) -> Gateway:
    listeners = []
    for i, raw in enumerate(spec.get("listeners") or []):
        allowed = raw.get("allowedRoutes") or {}
        kinds = allowed.get("kinds")
        listeners.append(
            Listener(
                index=i,
                name=raw["name"],
                port=raw["port"],
                protocol=raw["protocol"],
                hostname=raw.get("hostname") or "",
                allowed_from=(allowed.get("namespaces") or {}).get("from") or "Same",
                selector=label_selector((allowed.get("namespaces") or {}).get("selector")),
                allowed_kinds=None
                if kinds is None
                else tuple((GROUP if k.get("group") is None else k["group"], k["kind"]) for k in kinds),
                tls_mode=(raw.get("tls") or {}).get("mode") or ("Terminate" if raw.get("tls") else ""),
                certificate_refs=tuple(
                    SecretRef(
                        j,
                        r.get("group") or "",
                        r.get("kind") or "Secret",
                        r.get("namespace") or meta.namespace,
                        r["name"],
                    )
                    for j, r in enumerate((raw.get("tls") or {}).get("certificateRefs") or [])
                ),
            )
        )
    ref = (spec.get("infrastructure") or {}).get("parametersRef")
    written = f"{ref.get('group', '')}/{ref.get('kind', '')}/{ref.get('name', '')}" if ref else ""
    return Gateway(meta, spec["gatewayClassName"], tuple(listeners), written)


def _first_wins(items: list[dict[str, Any]], lower: bool) -> list[dict[str, Any]]:
    """ "Subsequent entries with an equivalent name MUST be ignored" (header names: case-insensitive)."""
    seen: set[str] = set()
    out = []
    for item in items:
        key = item["name"].lower() if lower else item["name"]
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _match(index: int, raw: dict[str, Any]) -> Match:
    path = raw.get("path") or {}
    value = path.get("value")
    return Match(
        index=index,
        path=PathMatch(path.get("type") or "PathPrefix", "/" if value is None else value),
        headers=tuple(
            ValueMatch(h.get("type") or "Exact", h["name"].lower(), h["value"])
            for h in _first_wins(raw.get("headers") or [], lower=True)
        ),
        query_params=tuple(
            ValueMatch(q.get("type") or "Exact", q["name"], q["value"])
            for q in _first_wins(raw.get("queryParams") or [], lower=False)
        ),
        method=raw.get("method") or "",
    )


def _header_filter(raw: dict[str, Any] | None) -> HeaderFilter | None:
    if raw is None:
        return None
    return HeaderFilter(
        set=tuple((h["name"], h["value"]) for h in _first_wins(raw.get("set") or [], lower=True)),
        add=tuple((h["name"], h["value"]) for h in _first_wins(raw.get("add") or [], lower=True)),
        remove=tuple(raw.get("remove") or ()),
    )


def _backend(raw: dict[str, Any], filters: tuple[Filter, ...] = ()) -> BackendRef:
    weight = raw.get("weight")
    return BackendRef(
        group=raw.get("group") or "",
        kind=raw.get("kind") or "Service",
        name=raw["name"],
        namespace=raw.get("namespace") or "",
        port=raw.get("port"),
        weight=1 if weight is None else weight,
        filters=filters,
    )


def _path_modifier(raw: dict[str, Any] | None) -> PathModifier | None:
    if raw is None:
        return None
    kind = raw["type"]
    value = raw.get("replaceFullPath") if kind == "ReplaceFullPath" else raw.get("replacePrefixMatch")
    return PathModifier(kind, value or "")


def _mirror_share(raw: dict[str, Any]) -> int:
    """percent / fraction -> requests mirrored per million (unset: all)."""
    fraction = raw.get("fraction")
    if fraction is not None:
        return round(1_000_000 * fraction["numerator"] / (fraction.get("denominator") or 100))
    percent = raw.get("percent")
    return 1_000_000 if percent is None else percent * 10_000


def _filter(index: int, raw: dict[str, Any]) -> Filter:
    kind = raw["type"]
    redirect, rewrite, mirror = raw.get("requestRedirect"), raw.get("urlRewrite"), raw.get("requestMirror")
    out = Filter(
        index=index,
        type=kind,
        request_headers=_header_filter(raw.get("requestHeaderModifier")),
        response_headers=_header_filter(raw.get("responseHeaderModifier")),
    )
    if mirror is not None:
        return Filter(
            index, kind, mirror=_backend(mirror["backendRef"]), mirror_per_million=_mirror_share(mirror)
        )
    if redirect is not None:
        return Filter(
            index,
            kind,
            redirect_scheme=redirect.get("scheme") or "",
            redirect_hostname=redirect.get("hostname") or "",
            redirect_port=redirect.get("port"),
            redirect_status=redirect.get("statusCode") or 302,
            path=_path_modifier(redirect.get("path")),
        )
    if rewrite is not None:
        return Filter(
            index,
            kind,
            rewrite_hostname=rewrite.get("hostname") or "",
            path=_path_modifier(rewrite.get("path")),
        )
    return out


def _rule(index: int, raw: dict[str, Any]) -> Rule:
    matches = raw.get("matches") or [{}]  # the CRD default: one PathPrefix "/" match
    timeouts = raw.get("timeouts") or {}
    return Rule(
        index=index,
        name=raw.get("name") or "",
        matches=tuple(_match(i, m) for i, m in enumerate(matches)),
        filters=tuple(_filter(i, f) for i, f in enumerate(raw.get("filters") or [])),
        backend_refs=tuple(
            _backend(b, tuple(_filter(i, f) for i, f in enumerate(b.get("filters") or [])))
            for b in raw.get("backendRefs") or []
        ),
        request_timeout=duration(timeouts.get("request")),
        backend_request_timeout=duration(timeouts.get("backendRequest")),
    )


def label_selector(raw: dict[str, Any] | None) -> LabelSelector | None:
    if raw is None:
        return None
    return LabelSelector(
        tuple(sorted((raw.get("matchLabels") or {}).items())),
        tuple(
            (e["key"], e["operator"], tuple(e.get("values") or ())) for e in raw.get("matchExpressions") or []
        ),
    )


def namespace(body: dict[str, Any], location: Location) -> Namespace:
    """A Namespace document (labels type-checked by the caller); its name is metadata.name."""
    metadata = body.get("metadata") or {}
    name = str(metadata.get("name") or "")
    labels = {**(metadata.get("labels") or {}), NAME_LABEL: name}
    return Namespace(name, tuple(sorted(labels.items())), location)


def reference_grant(meta: ObjectMeta, spec: dict[str, Any]) -> ReferenceGrant:
    return ReferenceGrant(
        meta,
        tuple((f.get("group") or "", f["kind"], f["namespace"]) for f in spec.get("from") or []),
        tuple((t.get("group") or "", t["kind"], t.get("name") or "") for t in spec.get("to") or []),
    )


def _grpc_match(index: int, raw: dict[str, Any]) -> GRPCMatch:
    method = raw.get("method")
    headers = tuple(
        ValueMatch(h.get("type") or "Exact", h["name"].lower(), h["value"])
        for h in _first_wins(raw.get("headers") or [], lower=True)
    )
    if method is None:
        return GRPCMatch(index, headers=headers)
    return GRPCMatch(
        index,
        kind=method.get("type") or "Exact",
        service=method.get("service") or "",
        method=method.get("method") or "",
        has_method_match=True,
        headers=headers,
    )


def grpc_route(meta: ObjectMeta, spec: dict[str, Any]) -> GRPCRoute:
    rules = []
    written = spec.get("rules")
    for i, raw in enumerate([{}] if written is None else written):  # the CRD default: one rule, no backend
        matches = raw.get("matches") or [{}]  # no matches: every gRPC request
        rules.append(
            GRPCRule(
                index=i,
                name=raw.get("name") or "",
                matches=tuple(_grpc_match(j, m) for j, m in enumerate(matches)),
                filters=tuple(_filter(j, f) for j, f in enumerate(raw.get("filters") or [])),
                backend_refs=tuple(
                    _backend(b, tuple(_filter(j, f) for j, f in enumerate(b.get("filters") or [])))
                    for b in raw.get("backendRefs") or []
                ),
            )
        )
    return GRPCRoute(meta, _parent_refs(meta, spec), tuple(spec.get("hostnames") or ()), tuple(rules))


def _parent_refs(meta: ObjectMeta, spec: dict[str, Any]) -> tuple[ParentRef, ...]:
    parents = []
    for i, raw in enumerate(spec.get("parentRefs") or []):
        group = raw.get("group")
        parents.append(
            ParentRef(
                index=i,
                group=GROUP if group is None else group,
                kind=raw.get("kind") or "Gateway",
                namespace=raw.get("namespace") or meta.namespace,
                name=raw["name"],
                section=raw.get("sectionName") or "",
                port=raw.get("port"),
                written=tuple(sorted(raw.items())),
            )
        )
    return tuple(parents)


def http_route(meta: ObjectMeta, spec: dict[str, Any]) -> HTTPRoute:
    rules = spec.get("rules")
    if rules is None:  # the CRD default: one rule matching every path (no backend: answers 500)
        rules = [{}]
    return HTTPRoute(
        meta=meta,
        parent_refs=_parent_refs(meta, spec),
        hostnames=tuple(spec.get("hostnames") or ()),
        rules=tuple(_rule(i, r) for i, r in enumerate(rules)),
    )


def l4_route(meta: ObjectMeta, spec: dict[str, Any]) -> L4Route:
    """A TLSRoute or TCPRoute (checked: rules and backendRefs are present)."""
    rules = tuple(
        L4Rule(i, raw.get("name") or "", tuple(_backend(b) for b in raw.get("backendRefs") or []))
        for i, raw in enumerate(spec.get("rules") or [])
    )
    return L4Route(meta, _parent_refs(meta, spec), tuple(spec.get("hostnames") or ()), rules)


def backend_tls_policy(meta: ObjectMeta, spec: dict[str, Any]) -> BackendTLSPolicy:
    validation = spec.get("validation") or {}
    return BackendTLSPolicy(
        meta,
        tuple(
            (t.get("group") or "", t["kind"], t["name"], t.get("sectionName") or "")
            for t in spec.get("targetRefs") or []
        ),
        tuple(
            (r.get("group") or "", r["kind"], r["name"]) for r in validation.get("caCertificateRefs") or []
        ),
        validation.get("wellKnownCACertificates") or "",
        validation.get("hostname") or "",
        tuple(s.get("hostname") or s.get("uri") or "" for s in validation.get("subjectAltNames") or []),
    )


def config_map(body: dict[str, Any], location: Location) -> ConfigMap:
    """A ConfigMap document (data type-checked by the caller)."""
    return ConfigMap(
        location.namespace, location.name, tuple(sorted((body.get("data") or {}).items())), location
    )
