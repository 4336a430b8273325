"""Tracing as Istio says it: meshConfig.extensionProviders (opentelemetry) and the Telemetry kind's `tracing`.

The mesh config is read the way istiod reads it: the `mesh` key of the ConfigMap `istio` in the root
namespace (`kubectl -n istio-system get configmap istio -o yaml` applies as is). Telemetry documents stay
CarriedResource (schema-checked by TELEMETRY_SPECS); `tracing_for` resolves, per workload, root namespace ->
namespace -> selector as istiod's pilot/pkg/model/telemetry.go does: later levels override earlier ones field
by field, only the first provider counts, and with no provider anywhere there is no tracing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

from xds.diagnostics import Diagnostic, Location, Severity
from xds.model.meta import CarriedResource, Meta
from xds.model.schema import AnyMap, Bool, Enum, F, ListOf, MapOf, Obj, Report, Spec, Str, _Scalar

ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace
MESH_CONFIG_MAP = "istio"  # istiod's mesh ConfigMap (key `mesh`), in the root namespace
MESH_CONFIG_KIND = "ConfigMap"
DEFAULT_SAMPLING = 1.0  # istiod's PILOT_TRACE_SAMPLING / proxyConfig.tracing.sampling default (percent)
CLIENT, SERVER = "CLIENT", "SERVER"
NO = False

Percent = _Scalar(
    "a percentage 0-100",
    lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 100,
)
_PROVIDER_REF = Obj({"name": F(Str)})
_TRACING = Obj(
    {
        "match": F(Obj({"mode": F(Enum("CLIENT_AND_SERVER", CLIENT, SERVER))})),
        "providers": F(ListOf(_PROVIDER_REF)),
        "randomSamplingPercentage": F(Percent),
        "disableSpanReporting": F(Bool),
        "customTags": F(MapOf(AnyMap), NO, "custom span tags are not added"),
        "useRequestIdForTraceSampling": F(Bool, NO, "Envoy's default (true) is kept"),
        "enableIstioTags": F(Bool, NO, "Istio's span tags are not added"),
    }
)
TELEMETRY = Obj(
    {
        "selector": F(Obj({"matchLabels": F(MapOf(Str))})),
        "targetRef": F(AnyMap, NO, "targetRef(s) need the Kubernetes Gateway API; use selector"),
        "targetRefs": F(ListOf(AnyMap), NO, "targetRef(s) need the Kubernetes Gateway API; use selector"),
        "tracing": F(ListOf(_TRACING)),
        "metrics": F(ListOf(AnyMap), NO, "metric overrides are not applied (Envoy's own stats are kept)"),
        "accessLogging": F(ListOf(AnyMap), NO, "access-log providers are not configured"),
    }
)
TELEMETRY_SPECS: dict[str, Spec] = {"Telemetry": TELEMETRY}


# ---- IR ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OtelProvider:
    """meshConfig.extensionProviders[].opentelemetry: an OTLP/gRPC collector."""

    name: str
    service: str  # a mesh host or a resolvable name/IP
    port: int
    max_tag_length: int = 0


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """The mesh config's tracing part (providers by name, the defaults)."""

    providers: tuple[OtelProvider, ...] = ()
    default_providers: tuple[str, ...] = ()
    default_sampling: float = DEFAULT_SAMPLING


@dataclass(frozen=True, slots=True)
class TracingSpec:
    """What one side (CLIENT: outbound/gateway listeners, SERVER: inbound) of a workload's HCMs trace."""

    provider: OtelProvider
    sampling: float  # percent


@dataclass(frozen=True, slots=True)
class WorkloadTracing:
    client: TracingSpec | None
    server: TracingSpec | None

    def for_side(self, side: str) -> TracingSpec | None:
        return self.client if side == CLIENT else self.server


@dataclass(frozen=True, slots=True)
class _Rule:
    modes: tuple[str, ...]
    providers: tuple[str, ...]
    sampling: float | None
    disabled: bool | None


@dataclass(frozen=True, slots=True)
class Telemetry:
    namespace: str
    selector: tuple[tuple[str, str], ...] | None
    rules: tuple[_Rule, ...]


# ---- mesh config (the `istio` ConfigMap) ---------------------------------------------------------------


def is_mesh_config_map(api_version: str, kind: str, namespace: str, name: str) -> bool:
    return (
        api_version == "v1"
        and kind == "ConfigMap"
        and namespace == ROOT_NAMESPACE
        and name == MESH_CONFIG_MAP
    )


def mesh_config_document(
    body: Mapping[str, Any], location: Location
) -> tuple[CarriedResource | None, list[Diagnostic]]:
    """The ConfigMap's `data.mesh` (YAML text, as istiod reads it) checked; carried with the parsed mesh."""
    diags: list[Diagnostic] = []

    def report(sev: str, fld: str, msg: str, code: str) -> None:
        diags.append(Diagnostic(location, fld, msg, Severity(sev), code))

    data = body.get("data") or {}
    raw = data.get("mesh", "") if isinstance(data, dict) else None
    if not isinstance(raw, str):
        report("error", "data.mesh", "expected the mesh config as a YAML string", "wrong-type")
        return None, diags
    try:
        mesh = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        report("error", "data.mesh", f"not valid YAML: {str(exc).splitlines()[0]}", "bad-yaml")
        return None, diags
    if not isinstance(mesh, dict):
        report("error", "data.mesh", f"expected a map, got {type(mesh).__name__}", "wrong-type")
        return None, diags
    if MESH_TRACING.check(mesh, "data.mesh", report):
        _check_providers(mesh, report)
        _check_legacy_tracing(mesh, report)
    if any(d.severity is Severity.ERROR for d in diags):
        return None, diags
    meta = Meta(MESH_CONFIG_KIND, location.namespace, location.name, location)
    return CarriedResource(meta, "v1", json.dumps(mesh, sort_keys=True, default=str)), diags


_OTEL = Obj(
    {
        "service": F(Str),
        "port": F(_Scalar("a port number 1-65535", lambda v: isinstance(v, int) and 0 < v < 65536)),
        "maxTagLength": F(_Scalar("a non-negative integer", lambda v: isinstance(v, int) and v >= 0)),
    },
    lenient=True,  # http, resourceDetectors, dynatraceSampler...: Envoy's defaults are kept
)
MESH_TRACING = Obj(
    {
        "extensionProviders": F(ListOf(Obj({"name": F(Str), "opentelemetry": F(_OTEL)}, lenient=True))),
        "defaultProviders": F(Obj({"tracing": F(ListOf(Str))}, lenient=True)),
        "defaultConfig": F(Obj({"tracing": F(Obj({"sampling": F(Percent)}, lenient=True))}, lenient=True)),
    },
    lenient=True,  # the rest of istiod's mesh config is not Mecha's to check here
)


def _check_providers(mesh: dict[str, Any], report: Report) -> None:
    seen: set[str] = set()
    for i, p in enumerate(mesh.get("extensionProviders") or []):
        where = f"data.mesh.extensionProviders[{i}]"
        name = p.get("name")
        if not name:
            report("error", f"{where}.name", "required field is missing", "required")
        elif name in seen:
            report("error", f"{where}.name", f"duplicate provider {name!r}", "duplicate")
        seen.add(str(name))
        otel = p.get("opentelemetry")
        if otel is None:
            kinds = sorted(k for k in p if k != "name")
            what = ", ".join(kinds) or "no provider type"
            report(
                "warning", where, f"{what}: only opentelemetry providers are exported; ignored", "unsupported"
            )
            continue
        for key in ("service", "port"):
            if not otel.get(key):
                report("error", f"{where}.opentelemetry.{key}", "required field is missing", "required")


LEGACY_TRACERS = ("zipkin", "lightstep", "datadog", "stackdriver", "openCensusAgent")


def _check_legacy_tracing(mesh: dict[str, Any], report: Report) -> None:
    """istiod's pre-Telemetry tracing (enableTracing + defaultConfig.tracing.<tracer>) builds Envoy's tracer
    from the proxy config; Mecha does not: say so on the field, with what to write instead."""
    legacy = ((mesh.get("defaultConfig") or {}).get("tracing")) or {}
    if mesh.get("enableTracing") is False:
        return
    for tracer in LEGACY_TRACERS:
        if not isinstance(legacy, dict) or legacy.get(tracer) is None:
            continue
        where = f"data.mesh.defaultConfig.tracing.{tracer}"
        address = (legacy.get(tracer) or {}).get("address") if isinstance(legacy.get(tracer), dict) else None
        if address:
            where += ".address"
        report(
            "warning",
            where,
            f"legacy proxy tracing (enableTracing + defaultConfig.tracing.{tracer}) is not configured in "
            f"Envoy{f': no spans go to {address}' if address else ''}; declare the collector under "
            "extensionProviders with opentelemetry: {service, port} and select it with a Telemetry "
            "tracing.providers or defaultProviders.tracing",
            "unsupported",
        )


def tracing_settings(carried: Iterable[CarriedResource]) -> TracingSettings:
    found = next((c for c in carried if c.meta.kind == MESH_CONFIG_KIND), None)
    return _settings(found.spec_json) if found is not None else TracingSettings()


@lru_cache(maxsize=16)
def _settings(spec_json: str) -> TracingSettings:
    mesh: dict[str, Any] = json.loads(spec_json)
    providers = tuple(
        OtelProvider(
            str(p["name"]),
            str(p["opentelemetry"]["service"]),
            int(p["opentelemetry"]["port"]),
            int(p["opentelemetry"].get("maxTagLength") or 0),
        )
        for p in mesh.get("extensionProviders") or ()
        if p.get("opentelemetry") is not None
    )
    sampling = ((mesh.get("defaultConfig") or {}).get("tracing") or {}).get("sampling")
    return TracingSettings(
        providers,
        tuple(str(n) for n in (mesh.get("defaultProviders") or {}).get("tracing") or ()),
        DEFAULT_SAMPLING if sampling is None else float(sampling),
    )


# ---- Telemetry resolution ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _telemetry(namespace: str, spec_json: str) -> Telemetry:
    spec: dict[str, Any] = json.loads(spec_json)
    labels = (spec.get("selector") or {}).get("matchLabels")
    rules = []
    for t in spec.get("tracing") or ():
        mode = str((t.get("match") or {}).get("mode") or "CLIENT_AND_SERVER")
        modes = (CLIENT, SERVER) if mode == "CLIENT_AND_SERVER" else (mode,)
        sampling = t.get("randomSamplingPercentage")
        rules.append(
            _Rule(
                modes,
                tuple(str(p.get("name", "")) for p in t.get("providers") or ()),
                None if sampling is None else float(sampling),
                t.get("disableSpanReporting"),
            )
        )
    selector = None if labels is None else tuple(sorted((str(k), str(v)) for k, v in labels.items()))
    return Telemetry(namespace, selector, tuple(rules))


def telemetries(carried: Iterable[CarriedResource]) -> tuple[Telemetry, ...]:
    return tuple(_telemetry(c.meta.namespace, c.spec_json) for c in carried if c.meta.kind == "Telemetry")


def tracing_for(
    settings: TracingSettings,
    docs: tuple[Telemetry, ...],
    namespace: str,
    labels: Mapping[str, str],
) -> WorkloadTracing:
    """The workload's tracing per side: root namespace, then its namespace, then a selecting Telemetry."""

    def matches(t: Telemetry) -> bool:
        return all(labels.get(k) == v for k, v in t.selector or ())

    root = [t for t in docs if t.namespace == ROOT_NAMESPACE and t.selector is None]
    own = [t for t in docs if t.namespace == namespace and t.selector is None and namespace != ROOT_NAMESPACE]
    picked = [t for t in docs if t.namespace == namespace and t.selector is not None and matches(t)]
    by_name = {p.name: p for p in settings.providers}
    out: dict[str, TracingSpec | None] = {}
    for side in (CLIENT, SERVER):
        providers = settings.default_providers
        sampling: float | None = None
        disabled = False
        for doc in (*root, *own, *picked[:1]):  # istiod: one selecting Telemetry per workload (the first)
            for rule in doc.rules:
                if side not in rule.modes:
                    continue
                providers = rule.providers or providers
                sampling = rule.sampling if rule.sampling is not None else sampling
                disabled = rule.disabled if rule.disabled is not None else disabled
        provider = by_name.get(providers[0]) if providers else None
        if provider is None or disabled:
            out[side] = None
            continue
        out[side] = TracingSpec(provider, settings.default_sampling if sampling is None else sampling)
    return WorkloadTracing(out[CLIENT], out[SERVER])


def telemetry_warnings(carried: tuple[CarriedResource, ...]) -> list[Diagnostic]:
    """A Telemetry naming a provider the mesh config does not define (istiod logs it and traces nothing)."""
    known = {p.name for p in tracing_settings(carried).providers}
    out = []
    for c in carried:
        if c.meta.kind != "Telemetry":
            continue
        for i, t in enumerate(json.loads(c.spec_json).get("tracing") or ()):
            for j, p in enumerate(t.get("providers") or ()):
                if p.get("name") not in known:
                    msg = (
                        f"provider {p.get('name')!r} is not an opentelemetry entry of meshConfig.extension"
                        f"Providers ({', '.join(sorted(known)) or 'none defined'}): nothing is traced"
                    )
                    where = f"spec.tracing[{i}].providers[{j}].name"
                    out.append(Diagnostic(c.meta.location, where, msg, Severity.WARNING, "unknown-provider"))
    return out
