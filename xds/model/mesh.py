"""MeshConfig (everything accepted, plus derived Services) and the document -> model stage."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from xds.diagnostics import Diagnostic, Location, Severity
from xds.gatewayapi.kinds import is_config_map, is_namespace
from xds.gatewayapi.stage import GatewayApiStage
from xds.inputs import EMPTY_INPUTS, ResolvedInputs
from xds.kube.registry import registry_documents
from xds.model import parse
from xds.model.checks import traffic_checks
from xds.model.dapr_types import component_type_problem
from xds.model.meta import CarriedResource, Meta
from xds.model.resources import (
    Component,
    DestinationRule,
    Resiliency,
    Service,
    ServiceEntry,
    Subscription,
    VirtualService,
    WorkloadEntry,
)
from xds.model.schema import Obj, Report, camelize
from xds.model.specs import CHECKED_CARRIED, SPEC_BY_KIND
from xds.model.telemetry import (
    Telemetry,
    TracingSettings,
    is_mesh_config_map,
    mesh_config_document,
    telemetries,
    telemetry_warnings,
    tracing_settings,
)
from xds.model.traffic import Sidecar
from xds.sources.kinds import Family, classify, dropped_kind_reason, unknown_kind_problem
from xds.sources.loader import RawDocument

_TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status"}
_DAPR_TOP_LEVEL = _TOP_LEVEL | {"scopes", "auth"}


@dataclass(frozen=True)
class MeshConfig:
    """The whole accepted config. Tuples are sorted by (namespace, name) so equal inputs are equal."""

    virtual_services: tuple[VirtualService, ...] = ()
    destination_rules: tuple[DestinationRule, ...] = ()
    service_entries: tuple[ServiceEntry, ...] = ()
    workload_entries: tuple[WorkloadEntry, ...] = ()
    components: tuple[Component, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    resiliencies: tuple[Resiliency, ...] = ()
    carried: tuple[CarriedResource, ...] = ()
    services: tuple[Service, ...] = ()  # derived, sorted by host
    sidecars: tuple[Sidecar, ...] = ()
    inputs: ResolvedInputs = EMPTY_INPUTS  # JWKS and credentials resolved with the version (inputs.py)

    @cached_property
    def service_by_host(self) -> dict[str, Service]:
        return {s.host: s for s in self.services}

    @cached_property
    def rule_by_host(self) -> dict[str, DestinationRule]:
        """The DR that applies to a host: the first by (namespace, name); conflicts are validation errors."""
        out: dict[str, DestinationRule] = {}
        for dr in self.destination_rules:
            out.setdefault(dr.host, dr)
        return out

    @cached_property
    def mesh_routes_by_host(self) -> dict[str, VirtualService]:
        """The sidecar VS per host: the oldest (a younger one for the same host is a warning)."""
        return mesh_route_choice(self.virtual_services)

    @cached_property
    def mesh_routes_outside_registry(self) -> tuple[tuple[str, VirtualService], ...]:
        """(host, VS) of mesh_routes_by_host whose host is no registry service nor `*`, sorted by host: the
        hosts served by a virtual host of their own (xds.translate.route.alias_virtual_hosts)."""
        return tuple(
            sorted(
                (
                    (h, vs)
                    for h, vs in self.mesh_routes_by_host.items()
                    if h != "*" and h not in self.service_by_host
                ),
                key=lambda item: item[0],
            )
        )

    @cached_property
    def tracing(self) -> tuple[TracingSettings, tuple[Telemetry, ...]]:
        """meshConfig's tracing providers and the Telemetry documents: read once per config, not per proxy
        (xds.translate.tracing.proxy_tracing resolves each proxy's tracing from them)."""
        return tracing_settings(self.carried), telemetries(self.carried)

    @cached_property
    def vs_by_ref(self) -> dict[tuple[str, str], VirtualService]:
        return {(v.meta.namespace, v.meta.name): v for v in self.virtual_services}


def mesh_route_choice(virtual_services: Iterable[VirtualService]) -> dict[str, VirtualService]:
    """Host -> the VirtualService sidecars route it with (istiod: the oldest by creationTimestamp)."""
    out: dict[str, VirtualService] = {}
    for vs in sorted((v for v in virtual_services if v.for_mesh), key=lambda v: v.age_key):
        for host in vs.hosts:
            out.setdefault(host, vs)
    return out


@dataclass
class ModelResult:
    config: MeshConfig
    diagnostics: list[Diagnostic]
    skipped: list[Location]


def _sorted(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(sorted(items, key=lambda x: (x.meta.namespace, x.meta.name)))


def _required(spec: dict[str, Any], kind: str, report: Report) -> None:
    def need(value: Any, path: str) -> None:
        if value in (None, "", [], {}):
            report("error", path, "required field is missing", "required")

    if kind == "DestinationRule":
        need(spec.get("host"), "spec.host")
        seen: set[str] = set()
        for i, s in enumerate(spec.get("subsets") or []):
            need(s.get("name"), f"spec.subsets[{i}].name")
            if s.get("name") in seen:
                report("error", f"spec.subsets[{i}].name", f"duplicate subset {s.get('name')!r}", "duplicate")
            seen.add(s.get("name"))
    elif kind == "ServiceEntry":
        need(spec.get("hosts"), "spec.hosts")
        for i, p in enumerate(spec.get("ports") or []):
            need(p.get("number"), f"spec.ports[{i}].number")
        for i, e in enumerate(spec.get("endpoints") or []):
            need(e.get("address"), f"spec.endpoints[{i}].address")
    elif kind == "WorkloadEntry":
        need(spec.get("address"), "spec.address")
    elif kind == "VirtualService":
        for i, r in enumerate(spec.get("http") or []):
            for j, d in enumerate(r.get("route") or []):
                need((d.get("destination") or {}).get("host"), f"spec.http[{i}].route[{j}].destination.host")
            if r.get("delegate") is not None:
                need(r["delegate"].get("name"), f"spec.http[{i}].delegate.name")
    elif kind == "Component":
        need(spec.get("type"), "spec.type")
        if isinstance(spec.get("type"), str) and spec["type"]:
            problem = component_type_problem(spec["type"], str(spec.get("version") or ""))
            if problem is not None:  # the capability service would refuse it at load time
                report("error", "spec.type", problem, "unknown-component-type")
    elif kind == "Subscription":
        need(spec.get("pubsubname"), "spec.pubsubname")
        need(spec.get("topic"), "spec.topic")
    traffic_checks(kind, spec, report)


def build_mesh(docs: Iterable[RawDocument]) -> ModelResult:
    diags: list[Diagnostic] = []
    skipped: list[Location] = []
    first_seen: dict[tuple[str, str, str], RawDocument] = {}
    used_keys: set[tuple[object, ...]] = set()
    built: dict[str, list[Any]] = {}
    gateway_api = GatewayApiStage()
    # Kubernetes Services (+ EndpointSlices, Pods) become ServiceEntries here, then take the ordinary path
    docs, kube_diags = registry_documents(docs)
    diags.extend(kube_diags)

    for doc in docs:
        loc = doc.location
        if is_mesh_config_map(doc.api_version, doc.kind, loc.namespace, loc.name):  # istiod's mesh config
            mesh_doc, problems = mesh_config_document(doc.body, loc)
            diags.extend(problems)
            if mesh_doc is not None:
                built.setdefault("carried", []).append(mesh_doc)
            continue
        info, bad_version = classify(doc.api_version, doc.kind)
        if bad_version:
            diags.append(Diagnostic(loc, "apiVersion", bad_version, Severity.ERROR, "bad-version"))
            continue
        if info is None:
            problem = unknown_kind_problem(doc.api_version, doc.kind)
            if problem is not None:  # a typo would otherwise be "applied" and do nothing
                diags.append(Diagnostic(loc, "kind", problem, Severity.ERROR, "unknown-kind"))
                continue
            if is_namespace(doc.api_version, doc.kind):  # read: its labels select Gateway API routes
                diags.extend(gateway_api.read_namespace(doc))
                continue
            if is_config_map(doc.api_version, doc.kind):  # read: ca.crt of BackendTLSPolicies
                diags.extend(gateway_api.read_config_map(doc))
                continue
            skipped.append(loc)
            dropped = dropped_kind_reason(doc.api_version, doc.kind)
            if dropped is not None:  # Istio config with an effect Mecha does not reproduce: say so
                msg = f"dropped: {doc.api_version} {doc.kind} is not honoured ({dropped})"
                diags.append(Diagnostic(loc, "kind", msg, Severity.WARNING, "dropped-kind"))
                continue
            msg = f"skipped: {doc.api_version} {doc.kind} is not a kind Mecha reads"
            diags.append(Diagnostic(loc, "kind", msg, Severity.INFO, "skipped"))
            continue
        if doc.key in first_seen:
            other = first_seen[doc.key].location
            msg = (
                f"duplicate {doc.kind} {loc.namespace}/{loc.name}: also defined in {other.file} "
                f"doc {other.document} (first wins)"
            )
            diags.append(Diagnostic(loc, "metadata.name", msg, Severity.ERROR, "duplicate"))
            continue
        first_seen[doc.key] = doc
        if info.family is Family.GATEWAY_API:  # converted below, once the registry services are known
            diags.extend(gateway_api.read(doc))
            continue

        obj, problems = _model_document_cached(doc, info.family, used_keys)
        diags.extend(problems)
        if obj is not None:
            built.setdefault("carried" if isinstance(obj, CarriedResource) else doc.kind, []).append(obj)
    _doc_cache.retain(used_keys)

    wes = _sorted(built.get("WorkloadEntry", []))
    ses = _sorted(built.get("ServiceEntry", []))
    services, svc_diags = derive_services(ses, wes)
    diags.extend(svc_diags)
    converted = gateway_api.convert(services)  # Istio Gateways + VirtualServices, as istiod converts them
    diags.extend(converted.diagnostics)
    built.setdefault("carried", []).extend(converted.gateways)
    config = MeshConfig(
        virtual_services=_sorted(built.get("VirtualService", []) + converted.virtual_services),
        destination_rules=_sorted(built.get("DestinationRule", []) + converted.destination_rules),
        service_entries=ses,
        workload_entries=wes,
        components=_sorted(built.get("Component", [])),
        subscriptions=_sorted(built.get("Subscription", [])),
        resiliencies=_sorted(built.get("Resiliency", [])),
        carried=tuple(
            sorted(built.get("carried", []), key=lambda c: (c.meta.kind, c.meta.namespace, c.meta.name))
        ),
        services=services,
        sidecars=_sorted(built.get("Sidecar", [])),
    )
    diags.extend(telemetry_warnings(config.carried))
    return ModelResult(config, diags, skipped)


class _DocCache:
    """Unchanged documents (same file, index and text) yield the very same IR objects across compiles, so
    the translator's memo hits by identity. Bounded to the documents of the latest compile."""

    def __init__(self) -> None:
        self.entries: dict[tuple[object, ...], tuple[Any, list[Diagnostic]]] = {}

    def retain(self, keys: set[tuple[object, ...]]) -> None:
        # a new dict, swapped in one assignment: safe if two compiles overlap (worst case: a rebuild)
        self.entries = {k: v for k, v in self.entries.items() if k in keys}


_doc_cache = _DocCache()


def _model_document_cached(
    doc: RawDocument, family: Family, used: set[tuple[object, ...]]
) -> tuple[Any, list[Diagnostic]]:
    loc = doc.location
    fingerprint = doc.source or json.dumps(doc.body, sort_keys=True, default=str)
    # the store stamps creationTimestamp into the body, not the YAML text: part of the key
    created = creation_timestamp(doc.body)
    key = (loc.file, loc.document, doc.api_version, doc.kind, loc.namespace, loc.name, fingerprint, created)
    used.add(key)
    found = _doc_cache.entries.get(key)
    if found is None:
        found = _doc_cache.entries[key] = _model_document(doc, family)
    return (found[0], list(found[1]))


def _model_document(doc: RawDocument, family: Family) -> tuple[Any, list[Diagnostic]]:
    """Schema-check one document and build its IR object (None when it has errors)."""
    loc = doc.location
    diags: list[Diagnostic] = []

    def report(sev: str, fld: str, msg: str, code: str) -> None:
        diags.append(Diagnostic(loc, fld, msg, Severity(sev), code))

    allowed = _DAPR_TOP_LEVEL if family is Family.DAPR else _TOP_LEVEL
    for key in doc.body:
        if key not in allowed:
            report("error", str(key), "unknown field", "unknown-field")
    spec = doc.body.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        report("error", "spec", f"expected a map, got {type(spec).__name__}", "wrong-type")
        return None, diags
    meta = Meta(doc.kind, loc.namespace, loc.name, loc)
    schema = SPEC_BY_KIND.get(doc.kind)
    if schema is None:  # carried kinds: kept verbatim for later stages
        spec_json = json.dumps(spec, sort_keys=True, default=str)
        return CarriedResource(meta, doc.api_version, spec_json), diags
    assert isinstance(schema, Obj)
    if family is not Family.DAPR:
        spec = camelize(spec, schema)  # protobuf JSON also accepts proto field names (source_labels)
    if schema.check(spec, "spec", report):
        _required(spec, doc.kind, report)  # relies on the types the schema just checked
    if any(d.severity is Severity.ERROR for d in diags):
        return None, diags  # the config is refused anyway; do not build half-checked objects
    if doc.kind in CHECKED_CARRIED:  # security kinds and Gateway: checked above, parsed by their own modules
        spec_json = json.dumps(spec, sort_keys=True, default=str)
        return CarriedResource(meta, doc.api_version, spec_json, _annotations(doc.body)), diags
    return _build(doc.kind, meta, spec, doc.body), diags


def _annotations(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    meta = body.get("metadata")
    found = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(found, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in found.items()))


def creation_timestamp(body: dict[str, Any]) -> str:
    meta = body.get("metadata")
    found = meta.get("creationTimestamp") if isinstance(meta, dict) else None
    return str(found) if found else ""


def _build(kind: str, meta: Meta, spec: dict[str, Any], body: dict[str, Any]) -> Any:
    if kind == "VirtualService":
        return replace(parse.virtual_service(meta, spec), created=creation_timestamp(body))
    if kind == "DestinationRule":
        return parse.destination_rule(meta, spec)
    if kind == "ServiceEntry":
        return parse.service_entry(meta, spec)
    if kind == "WorkloadEntry":
        return parse.workload_entry(meta, spec, body)  # status conditions: endpoint health
    if kind == "Sidecar":
        return parse.sidecar(meta, spec)
    if kind == "Component":
        return parse.component(meta, spec, body)
    if kind == "Subscription":
        return parse.subscription(meta, spec, body)
    return parse.resiliency(meta, spec, body)


_service_cache: dict[str, Service] = {}


def derive_services(
    entries: tuple[ServiceEntry, ...], workloads: tuple[WorkloadEntry, ...]
) -> tuple[tuple[Service, ...], list[Diagnostic]]:
    diags: list[Diagnostic] = []
    by_host: dict[str, Service] = {}
    # index by (namespace, label, value) so selection is not O(entries x workloads)
    by_label: dict[tuple[str, str, str], list[WorkloadEntry]] = {}
    by_ns: dict[str, list[WorkloadEntry]] = {}
    for we in workloads:
        by_ns.setdefault(we.meta.namespace, []).append(we)
        for k, v in we.endpoint.labels:
            by_label.setdefault((we.meta.namespace, k, v), []).append(we)
    for se in entries:
        if se.workload_selector is not None:
            # istiod: a ServiceEntry selects WorkloadEntries of its own namespace by labels
            ns, selector = se.meta.namespace, se.workload_selector
            candidates = by_label.get((ns, *selector[0]), []) if selector else by_ns.get(ns, [])
            eps = tuple(we.endpoint for we in candidates if we.endpoint.matches(selector))
        else:
            eps = se.endpoints
        for i, host in enumerate(se.hosts):
            if host in by_host:
                first = by_host[host].source
                msg = f"host {host} is already defined by {first.ref if first else '?'}; this one is ignored"
                diags.append(
                    Diagnostic(se.meta.location, f"spec.hosts[{i}]", msg, Severity.WARNING, "dup-host")
                )
                continue
            svc = Service(
                host=host,
                namespace=se.meta.namespace,
                ports=se.ports,
                resolution=se.resolution,
                mesh_external=se.location == "MESH_EXTERNAL",
                endpoints=eps,
                addresses=se.addresses,
                export_to=se.export_to,
                source=se.meta,
                subject_alt_names=se.subject_alt_names,
            )
            previous = _service_cache.get(host)
            by_host[host] = previous if previous == svc and previous.source == svc.source else svc
    _service_cache.clear()
    _service_cache.update(by_host)
    return tuple(by_host[h] for h in sorted(by_host)), diags
