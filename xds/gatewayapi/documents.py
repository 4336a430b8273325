"""RawDocument -> typed Gateway API object, with the diagnostics of the schema (schema.py) and CRD checks
(checks.py): file, document, field and reason, like every Istio kind. A document with an error is refused
(None); warnings (fields accepted but not honoured yet) leave it accepted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xds.diagnostics import Diagnostic, Severity
from xds.gatewayapi import objects
from xds.gatewayapi.checks import check_spec
from xds.gatewayapi.kinds import (
    BACKEND_TLS_POLICY,
    GATEWAY,
    GATEWAY_CLASS,
    GRPC_ROUTE,
    HTTP_ROUTE,
    READ_KINDS,
    REFERENCE_GRANT,
    TCP_ROUTE,
    TLS_ROUTE,
    is_config_map,
    is_gateway_api,
    is_namespace,
)
from xds.gatewayapi.schema import SPECS
from xds.sources.loader import RawDocument

_TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
GatewayApiObject = (
    objects.GatewayClass
    | objects.Gateway
    | objects.HTTPRoute
    | objects.GRPCRoute
    | objects.ReferenceGrant
    | objects.L4Route
    | objects.BackendTLSPolicy
    | objects.Namespace
    | objects.ConfigMap
)


@dataclass
class GatewayApiInputs:
    """The Gateway API objects of one config (and its Namespaces' labels), in document order."""

    classes: list[objects.GatewayClass] = field(default_factory=list)
    gateways: list[objects.Gateway] = field(default_factory=list)
    routes: list[objects.HTTPRoute] = field(default_factory=list)
    grpc_routes: list[objects.GRPCRoute] = field(default_factory=list)
    grants: list[objects.ReferenceGrant] = field(default_factory=list)
    l4_routes: list[objects.L4Route] = field(default_factory=list)  # TLSRoutes and TCPRoutes
    tls_policies: list[objects.BackendTLSPolicy] = field(default_factory=list)
    config_maps: dict[tuple[str, str], objects.ConfigMap] = field(default_factory=dict)  # (ns, name)
    namespaces: dict[str, objects.Namespace] = field(default_factory=dict)

    def add(self, obj: GatewayApiObject) -> None:
        if isinstance(obj, objects.GatewayClass):
            self.classes.append(obj)
        elif isinstance(obj, objects.Gateway):
            self.gateways.append(obj)
        elif isinstance(obj, objects.HTTPRoute):
            self.routes.append(obj)
        elif isinstance(obj, objects.GRPCRoute):
            self.grpc_routes.append(obj)
        elif isinstance(obj, objects.ReferenceGrant):
            self.grants.append(obj)
        elif isinstance(obj, objects.L4Route):
            self.l4_routes.append(obj)
        elif isinstance(obj, objects.BackendTLSPolicy):
            self.tls_policies.append(obj)
        elif isinstance(obj, objects.ConfigMap):
            self.config_maps.setdefault((obj.namespace, obj.name), obj)
        else:
            self.namespaces.setdefault(obj.name, obj)

    def __bool__(self) -> bool:
        return bool(
            self.classes
            or self.gateways
            or self.routes
            or self.grpc_routes
            or self.l4_routes
            or self.tls_policies
        )


def read_namespace(doc: RawDocument) -> tuple[objects.Namespace | None, list[Diagnostic]]:
    """A Namespace document: only its labels are read (allowedRoutes namespace selectors)."""
    meta: Any = doc.body.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if labels is not None and not (
        isinstance(labels, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        msg = "expected a map of strings (label values must be quoted strings)"
        return None, [Diagnostic(doc.location, "metadata.labels", msg, Severity.ERROR, "wrong-type")]
    return objects.namespace(doc.body, doc.location), []


def read_config_map(doc: RawDocument) -> tuple[objects.ConfigMap | None, list[Diagnostic]]:
    """A ConfigMap document: only its data is read (BackendTLSPolicy caCertificateRefs, key ca.crt)."""
    data: Any = doc.body.get("data")
    if data is not None and not (
        isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    ):
        msg = "expected a map of strings"
        return None, [Diagnostic(doc.location, "data", msg, Severity.ERROR, "wrong-type")]
    return objects.config_map(doc.body, doc.location), []


def read_document(doc: RawDocument) -> tuple[GatewayApiObject | None, list[Diagnostic]]:
    """A gateway.networking.k8s.io document (READ_KINDS), checked."""
    loc = doc.location
    diags: list[Diagnostic] = []

    def report(severity: str, fld: str, message: str, code: str) -> None:
        diags.append(Diagnostic(loc, fld, message, Severity(severity), code))

    for key in doc.body:
        if key not in _TOP_LEVEL:
            report("error", str(key), "unknown field", "unknown-field")
    spec: Any = doc.body.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        report("error", "spec", f"expected a map, got {type(spec).__name__}", "wrong-type")
        return None, diags
    if SPECS[doc.kind].check(spec, "spec", report):
        check_spec(doc.kind, spec, report)
    if any(d.severity is Severity.ERROR for d in diags):
        return None, diags
    meta = objects.meta_of(doc.kind, doc.api_version, loc, doc.body)
    if doc.kind == GATEWAY_CLASS:
        return objects.gateway_class(meta, spec), diags
    if doc.kind == GATEWAY:
        return objects.gateway(meta, spec), diags
    if doc.kind == GRPC_ROUTE:
        return objects.grpc_route(meta, spec), diags
    if doc.kind == REFERENCE_GRANT:
        return objects.reference_grant(meta, spec), diags
    if doc.kind in (TLS_ROUTE, TCP_ROUTE):
        return objects.l4_route(meta, spec), diags
    if doc.kind == BACKEND_TLS_POLICY:
        return objects.backend_tls_policy(meta, spec), diags
    assert doc.kind == HTTP_ROUTE
    return objects.http_route(meta, spec), diags


def read_documents(docs: list[RawDocument]) -> tuple[GatewayApiInputs, list[Diagnostic]]:
    """Every Gateway API document of docs (others are ignored); refused ones are left out."""
    inputs = GatewayApiInputs()
    diags: list[Diagnostic] = []
    for doc in docs:
        if is_namespace(doc.api_version, doc.kind) or is_config_map(doc.api_version, doc.kind):
            read = read_namespace if is_namespace(doc.api_version, doc.kind) else read_config_map
            found, problems = read(doc)
            diags.extend(problems)
            if found is not None:
                inputs.add(found)
            continue
        if not is_gateway_api(doc.api_version) or doc.kind not in READ_KINDS:
            continue
        obj, problems = read_document(doc)
        diags.extend(problems)
        if obj is not None:
            inputs.add(obj)
    return inputs, diags
