"""Shared helpers of the Gateway API tests: YAML text -> compiled config, conversion and status views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xds.diagnostics import Diagnostic, Severity
from xds.gatewayapi.convert import Conversion, convert
from xds.gatewayapi.documents import read_documents
from xds.gatewayapi.status import ObjectStatus
from xds.model.resources import HTTPRoute, Service, ServicePort, VirtualService
from xds.pipeline import CompileResult, compile_documents, load_text
from xds.testing import certs

GATEWAY = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: mecha
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
"""


def compile_text(text: str, strict: bool = False) -> CompileResult:
    docs, diags = load_text(text, "gateway-api.yaml")
    result = compile_documents(docs, strict=strict)
    result.diagnostics[:0] = diags
    return result


def by_severity(result: CompileResult, severity: Severity) -> list[str]:
    return [str(d) for d in result.diagnostics if d.severity is severity]


def services(*hosts: str, port: int = 8080) -> dict[str, Service]:
    return {h: Service(h, h.split(".")[1], (ServicePort(port),)) for h in hosts}


def svc(name: str, namespace: str = "default") -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def convert_text(text: str, known: dict[str, Service] | None = None) -> tuple[Conversion, list[Diagnostic]]:
    docs, diags = load_text(text, "gateway-api.yaml")
    assert not diags, [str(d) for d in diags]
    inputs, problems = read_documents(docs)
    assert not [d for d in problems if d.severity is Severity.ERROR], [str(d) for d in problems]
    return convert(inputs, known or {}), problems


def vs_by_host(conversion: Conversion) -> dict[str, VirtualService]:
    return {vs.hosts[0]: vs for vs in conversion.virtual_services}


def route_line(r: HTTPRoute) -> str:
    """One generated route as a short line: match -> action (what the golden files and asserts read)."""
    m = r.matches[0]
    parts = [f"{m.uri.kind} {m.uri.value}" if m.uri else "any"]
    parts += [f"{k}: {v.kind} {v.value}" for k, v in m.headers]
    parts += [f"?{k}={v.kind} {v.value}" for k, v in m.query_params]
    if m.method:
        parts.append(f"method {m.method.value}")
    if m.port is not None:
        parts.append(f"port {m.port}")
    if r.redirect is not None:
        action = f"redirect {r.redirect}"
    elif r.direct_response is not None:
        action = f"answer {r.direct_response.status}"
    else:
        action = " + ".join(
            f"{d.destination.host}:{d.destination.port}" + (f"@{d.weight}" if d.weight is not None else "")
            for d in r.route
        )
    extras = []
    if r.rewrite_uri is not None:
        extras.append(f"rewrite prefix {r.rewrite_uri}")
    if r.regex_rewrite is not None:
        extras.append(f"rewrite path {r.regex_rewrite.substitution}")
    if r.rewrite_authority:
        extras.append(f"rewrite host {r.rewrite_authority}")
    if r.headers is not None:
        for side, ops in (("request", r.headers.request), ("response", r.headers.response)):
            extras += [f"{side} set {k}={v}" for k, v in ops.set]
            extras += [f"{side} add {k}={v}" for k, v in ops.add]
            extras += [f"{side} remove {k}" for k in ops.remove]
    extras += [f"mirror {m.destination.host}:{m.destination.port} {m.percent.ratio:.0%}" for m in r.mirrors]
    if r.timeout is not None:
        extras.append(f"timeout {r.timeout.total_seconds()}s")
    tail = f" ({'; '.join(extras)})" if extras else ""
    return f"{r.name}: {', '.join(parts)} -> {action}{tail}"


def status_of(conversion: Conversion, kind: str, name: str, namespace: str = "default") -> ObjectStatus:
    return next(
        s
        for s in conversion.statuses
        if (s.meta.kind, s.meta.namespace, s.meta.name) == (kind, namespace, name)
    )


def conditions(items: Any) -> dict[str, tuple[str, str]]:
    """type -> (status, reason)"""
    return {c.type: (c.status, c.reason) for c in items}


def self_signed(folder: Path, host: str) -> bytes:
    """An EC certificate for host (its own CA, so a client can trust it directly) as folder/tls.crt +
    tls.key; the certificate's PEM."""
    cert, _key = certs.self_signed(folder, host, ca=True)
    return cert.read_bytes()


def selector_gateway(selector: str, name: str = "web", namespace: str = "infra") -> str:
    """A Gateway whose one HTTP listener (port 80) admits routes of the namespaces `selector` selects."""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  gatewayClassName: mecha
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {{namespaces: {{from: Selector, selector: {selector}}}}}
---
"""


def namespace_doc(name: str, labels: str = "") -> str:
    """A Namespace document (where the labels a listener's selector reads come from without an API server)."""
    meta = f"{{name: {name}, labels: {labels}}}" if labels else f"{{name: {name}}}"
    return f"apiVersion: v1\nkind: Namespace\nmetadata: {meta}\n---\n"


def reference_grant(
    namespace: str, source: str, target: str, version: str = "v1beta1", name: str = "g"
) -> str:
    """A ReferenceGrant in namespace with one `from` (source) and one `to` (target), both YAML flow maps."""
    return f"""apiVersion: gateway.networking.k8s.io/{version}
kind: ReferenceGrant
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  from: [{source}]
  to: [{target}]
---
"""
