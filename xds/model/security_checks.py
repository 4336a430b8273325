"""Semantic checks of the security kinds and Gateways (after the schema tables): every error names the file,
the resource and the field. Errors refuse the whole config, so no proxy ever gets half of a policy."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any

from xds.diagnostics import Diagnostic, Severity
from xds.inputs import JwksInput
from xds.model.gateway import GATEWAY_SPECS
from xds.model.mesh import MeshConfig
from xds.model.meta import CarriedResource
from xds.model.regex import namespace_regex, principal_regex, regex_problem
from xds.model.security import ClientTLS

# `when` keys translated (istio-mapping.md §8); request.auth.claims[...] is checked separately
WHEN_KEYS = {
    "request.headers",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims",
    "destination.ip",
    "destination.port",
    "connection.sni",
}
_KEY_RE = re.compile(r"^([a-z.]+?)(\[[^\]]+\])*$")


def _diag(res: CarriedResource, fld: str, msg: str, code: str, warn: bool = False) -> Diagnostic:
    sev = Severity.WARNING if warn else Severity.ERROR
    return Diagnostic(res.meta.location, fld, msg, sev, code)


def when_key_base(key: str) -> str | None:
    m = _KEY_RE.match(key)
    return m.group(1) if m else None


def _is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
        return True
    except ValueError:
        return False


def _is_port(value: str) -> bool:
    return value.isdigit() and 0 < int(value) < 65536


def _check_peer(res: CarriedResource, spec: dict[str, Any]) -> list[Diagnostic]:
    if spec.get("portLevelMtls") and not (spec.get("selector") or {}).get("matchLabels"):
        msg = "portLevelMtls needs a workload selector (istiod refuses namespace-wide port settings)"
        return [_diag(res, "spec.portLevelMtls", msg, "needs-selector")]
    return []


def authz_regex(key: str, value: str) -> str | None:
    """The regex the RBAC translation builds from a principal or namespace value (xds/translate/security/
    rbac.py, as istiod does), or None when it builds a plain exact/prefix/suffix matcher."""
    if key in ("namespaces", "notNamespaces", "source.namespace"):
        return namespace_regex(value)
    if key in ("principals", "notPrincipals", "source.principal"):
        return principal_regex(value)
    return None


def _regex_diags(res: CarriedResource, where: str, key: str, values: Any) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for k, v in enumerate(values or ()):
        regex = authz_regex(key, str(v))
        problem = regex_problem(regex) if regex is not None else None
        if problem is not None:
            msg = f"{v!r} becomes the Envoy regex {problem}"
            out.append(_diag(res, f"{where}[{k}]", msg, "bad-regex"))
    return out


def _check_authz(res: CarriedResource, spec: dict[str, Any]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    unsupported = {
        "targetRef": "targetRef needs the Kubernetes Gateway API; use selector",
        "targetRefs": "targetRefs need the Kubernetes Gateway API; use selector",
        "provider": "CUSTOM authorization (ext_authz providers) is not supported",
    }
    for key, why in unsupported.items():
        if spec.get(key) is not None:
            out.append(_diag(res, f"spec.{key}", why, "unsupported"))
    if spec.get("action") == "CUSTOM":
        out.append(_diag(res, "spec.action", "CUSTOM authorization is not supported", "unsupported"))
    for i, rule in enumerate(spec.get("rules") or ()):
        base = f"spec.rules[{i}]"
        for j, frm in enumerate(rule.get("from") or ()):
            src = frm.get("source") or {}
            where = f"{base}.from[{j}].source"
            for key in ("serviceAccounts", "notServiceAccounts"):
                if src.get(key):
                    out.append(_diag(res, f"{where}.{key}", "not supported: use principals", "unsupported"))
            for key in ("principals", "notPrincipals", "namespaces", "notNamespaces"):
                out += _regex_diags(res, f"{where}.{key}", key, src.get(key))
            for key in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
                for k, v in enumerate(src.get(key) or ()):
                    if not _is_cidr(str(v)):
                        msg = f"{v!r} is not an IP address or CIDR block"
                        out.append(_diag(res, f"{where}.{key}[{k}]", msg, "bad-cidr"))
        for j, to in enumerate(rule.get("to") or ()):
            op = to.get("operation") or {}
            where = f"{base}.to[{j}].operation"
            for key in ("ports", "notPorts"):
                for k, v in enumerate(op.get(key) or ()):
                    if not _is_port(str(v)):
                        out.append(
                            _diag(res, f"{where}.{key}[{k}]", f"{v!r} is not a port 1-65535", "bad-port")
                        )
            for key in ("paths", "notPaths"):
                for k, v in enumerate(op.get(key) or ()):
                    if "{" in str(v):
                        msg = f"{v!r}: path templates ({{*}}, {{**}}) are not supported"
                        out.append(_diag(res, f"{where}.{key}[{k}]", msg, "unsupported"))
        for j, cond in enumerate(rule.get("when") or ()):
            where = f"{base}.when[{j}]"
            key = str(cond.get("key") or "")
            if when_key_base(key) not in WHEN_KEYS:
                msg = f"condition key {key!r} is not supported (one of: {', '.join(sorted(WHEN_KEYS))})"
                out.append(_diag(res, f"{where}.key", msg, "bad-key"))
                continue
            if not cond.get("values") and not cond.get("notValues"):
                out.append(_diag(res, where, "needs values or notValues", "required"))
            for field in ("values", "notValues"):
                out += _regex_diags(res, f"{where}.{field}", key, cond.get(field))
            if key.startswith("request.headers") and "[" not in key:
                out.append(_diag(res, f"{where}.key", "use request.headers[<name>]", "bad-key"))
            if key in ("source.ip", "remote.ip", "destination.ip"):
                for field in ("values", "notValues"):
                    for k, v in enumerate(cond.get(field) or ()):
                        if not _is_cidr(str(v)):
                            msg = f"{v!r} is not an IP address or CIDR block"
                            out.append(_diag(res, f"{where}.{field}[{k}]", msg, "bad-cidr"))
            if key == "destination.port":
                for field in ("values", "notValues"):
                    for k, v in enumerate(cond.get(field) or ()):
                        if not _is_port(str(v)):
                            out.append(
                                _diag(res, f"{where}.{field}[{k}]", f"{v!r} is not a port", "bad-port")
                            )
    return out


def _check_jwks(res: CarriedResource, text: str, where: str) -> list[Diagnostic]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return [_diag(res, where, f"JWKS is not valid JSON: {exc}", "bad-jwks")]
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
        return [_diag(res, where, 'JWKS must be a JSON object with a non-empty "keys" list', "bad-jwks")]
    return []


def _check_authn(
    res: CarriedResource, spec: dict[str, Any], resolved: dict[str, JwksInput] | None = None
) -> list[Diagnostic]:
    """resolved: the config's JWKS inputs by uri (config.inputs: fetched / read when the change was made)."""
    out: list[Diagnostic] = []
    for key in ("targetRef", "targetRefs"):
        if spec.get(key) is not None:
            out.append(_diag(res, f"spec.{key}", "not supported: use selector", "unsupported"))
    issuers: dict[str, int] = {}
    for i, rule in enumerate(spec.get("jwtRules") or ()):
        where = f"spec.jwtRules[{i}]"
        issuer = rule.get("issuer")
        if not issuer:
            out.append(_diag(res, f"{where}.issuer", "required field is missing", "required"))
        elif issuer in issuers:
            msg = f"issuer {issuer!r} is already used by jwtRules[{issuers[issuer]}]"
            out.append(_diag(res, f"{where}.issuer", msg, "duplicate"))
        else:
            issuers[issuer] = i
        jwks, uri = rule.get("jwks"), rule.get("jwksUri")
        if jwks and uri:
            out.append(_diag(res, where, "set jwks or jwksUri, not both", "one-of"))
        elif jwks:
            out += _check_jwks(res, jwks, f"{where}.jwks")
        elif uri:
            got = (resolved or {}).get(str(uri))
            if str(uri).startswith(("http://", "https://")):
                if got is not None and got.error and not got.stale:
                    msg = f"cannot fetch the JWKS from {uri}: {got.error}"
                    out.append(_diag(res, f"{where}.jwksUri", msg, "unreachable"))
                elif got is not None:
                    if got.stale:
                        msg = f"cannot refresh the JWKS from {uri} ({got.error}); keeping the previous copy"
                        out.append(_diag(res, f"{where}.jwksUri", msg, "unreachable", warn=True))
                    out += _check_jwks(res, got.text, f"{where}.jwksUri")
                # else: a mesh service; its proxy fetches it through the service's cluster (remote_jwks)
            elif not str(uri).startswith("file://"):
                msg = f"{uri!r}: expected an http://, https:// or file:// URI"
                out.append(_diag(res, f"{where}.jwksUri", msg, "unsupported"))
            elif got is None or (got.error and not got.text):
                msg = f"cannot read {uri}: {got.error if got else 'not resolved'}"
                out.append(_diag(res, f"{where}.jwksUri", msg, "io"))
            else:
                if got.stale:
                    msg = f"cannot read {uri} again ({got.error}); keeping the previous copy"
                    out.append(_diag(res, f"{where}.jwksUri", msg, "io", warn=True))
                out += _check_jwks(res, got.text, f"{where}.jwksUri")
        else:
            out.append(_diag(res, where, "needs jwks (inline) or jwksUri", "required"))
        for j, h in enumerate(rule.get("fromHeaders") or ()):
            if not h.get("name"):
                out.append(
                    _diag(res, f"{where}.fromHeaders[{j}].name", "required field is missing", "required")
                )
    return out


def _readable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def _check_gateway(res: CarriedResource, spec: dict[str, Any]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    servers = spec.get("servers") or []
    if not servers:
        out.append(_diag(res, "spec.servers", "required field is missing", "required"))
    protocols: dict[int, tuple[str, int]] = {}
    for i, server in enumerate(servers):
        where = f"spec.servers[{i}]"
        port = server.get("port") or {}
        number, protocol = port.get("number"), str(port.get("protocol") or "").upper()
        if not number:
            out.append(_diag(res, f"{where}.port.number", "required field is missing", "required"))
        tls = server.get("tls") or {}
        passthrough = protocol == "TLS" and tls.get("mode") == "PASSTHROUGH"  # SNI routing of tls[] routes
        if protocol not in ("HTTP", "HTTPS", "HTTP2", "GRPC", "TCP") and not passthrough:
            why = (
                "TLS servers are supported with tls.mode PASSTHROUGH only" if protocol == "TLS" else "unknown"
            )
            msg = f"protocol {protocol or '(missing)'}: {why}; use HTTP, HTTPS, HTTP2, GRPC, TCP or TLS"
            out.append(_diag(res, f"{where}.port.protocol", msg, "unsupported"))
        if not server.get("hosts"):
            out.append(_diag(res, f"{where}.hosts", "required field is missing", "required"))
        if number and protocol:
            kind = protocol if protocol in ("HTTPS", "TCP", "TLS") else "HTTP"
            seen = protocols.setdefault(number, (kind, i))
            if seen[0] != kind:
                msg = f"port {number} is already a {seen[0]} server (servers[{seen[1]}])"
                out.append(_diag(res, f"{where}.port", msg, "port-conflict"))
        if protocol == "HTTPS":
            mode = tls.get("mode")
            if mode not in ("SIMPLE", "MUTUAL"):
                msg = f"HTTPS servers need tls.mode SIMPLE or MUTUAL (got {mode or 'none'})"
                out.append(_diag(res, f"{where}.tls.mode", msg, "unsupported"))
            if tls.get("credentialNames"):
                msg = "credentialNames is not supported; use credentialName or serverCertificate/privateKey"
                out.append(_diag(res, f"{where}.tls.credentialNames", msg, "unsupported"))
            needed = ["serverCertificate", "privateKey"] + (["caCertificates"] if mode == "MUTUAL" else [])
            if tls.get("credentialName"):  # SDS from the credentials folder, checked when translated
                needed = []
            for key in needed:
                path = tls.get(key)
                if not path:
                    out.append(_diag(res, f"{where}.tls.{key}", "required field is missing", "required"))
                elif not _readable(str(path)):
                    out.append(_diag(res, f"{where}.tls.{key}", f"file {path} is not readable", "io"))
        elif (tls.get("mode") and not passthrough) or tls.get("serverCertificate"):
            msg = f"tls settings on a {protocol} server are ignored (only httpsRedirect applies)"
            out.append(_diag(res, f"{where}.tls", msg, "ignored", warn=True))
        if tls.get("httpsRedirect") and protocol not in ("HTTP", "HTTP2", "GRPC"):
            msg = "httpsRedirect applies to HTTP servers only"
            out.append(_diag(res, f"{where}.tls.httpsRedirect", msg, "ignored", warn=True))
    return out


def _tls_problems(tls: ClientTLS, where: str) -> list[tuple[str, str, str]]:
    """(field, message, code) of one DestinationRule tls block: files must be readable; MUTUAL needs a
    client certificate and key; ISTIO_MUTUAL uses the mesh certificates, not files."""
    out: list[tuple[str, str, str]] = []
    files = {
        "clientCertificate": tls.client_certificate,
        "privateKey": tls.private_key,
        "caCertificates": tls.ca_certificates,
    }
    if tls.mode == "MUTUAL":
        for key in ("clientCertificate", "privateKey"):
            if not files[key]:
                out.append((f"{where}.{key}", "required field is missing (tls.mode MUTUAL)", "required"))
    if tls.mode in ("SIMPLE", "MUTUAL"):
        for key, path in files.items():
            if path and not _readable(path):
                out.append((f"{where}.{key}", f"file {path} is not readable", "io"))
    elif tls.mode == "ISTIO_MUTUAL":
        for key, path in files.items():
            if path:
                msg = "ISTIO_MUTUAL uses the mesh certificates (SDS); certificate files are not allowed"
                out.append((f"{where}.{key}", msg, "conflict"))
    return out


def check_client_tls(config: MeshConfig) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for dr in config.destination_rules:
        places = [("spec.trafficPolicy", dr.traffic_policy)]
        places += [(f"spec.subsets[{i}].trafficPolicy", s.traffic_policy) for i, s in enumerate(dr.subsets)]
        for base, policy in places:
            if policy is None:
                continue
            blocks = [(f"{base}.tls", policy.tls)]
            blocks += [
                (f"{base}.portLevelSettings[{j}].tls", pl.tls) for j, (_, pl) in enumerate(policy.port_level)
            ]
            for where, tls in blocks:
                if tls is None:
                    continue
                for field, msg, code in _tls_problems(tls, where):
                    out.append(Diagnostic(dr.meta.location, field, msg, Severity.ERROR, code))
    return out


_CHECKS = {
    "PeerAuthentication": _check_peer,
    "AuthorizationPolicy": _check_authz,
    "RequestAuthentication": _check_authn,
    "Gateway": _check_gateway,
}


def check_security(config: MeshConfig) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    namespace_wide: dict[str, CarriedResource] = {}
    gateway_refs: set[str] = set()
    out += check_client_tls(config)
    resolved = config.inputs.jwks_by_uri()
    for res in config.carried:
        check = _CHECKS.get(res.meta.kind)
        if check is None:
            continue
        spec = json.loads(res.spec_json)
        out += _check_authn(res, spec, resolved) if check is _check_authn else check(res, spec)
        if res.meta.kind == "PeerAuthentication" and not (spec.get("selector") or {}).get("matchLabels"):
            first = namespace_wide.setdefault(res.meta.namespace, res)
            if first is not res:
                msg = (
                    f"namespace {res.meta.namespace} already has a namespace-wide PeerAuthentication "
                    f"({first.meta.name}); only that one applies"
                )
                out.append(_diag(res, "spec.selector", msg, "conflict", warn=True))
        if res.meta.kind in GATEWAY_SPECS:
            gateway_refs.add(f"{res.meta.namespace}/{res.meta.name}")
    for vs in config.virtual_services:
        for i, gw in enumerate(vs.gateways):
            ref = gw if "/" in gw else f"{vs.meta.namespace}/{gw}"
            if gw != "mesh" and ref not in gateway_refs:
                msg = f"gateway {gw} is not defined: these routes reach no gateway"
                out.append(
                    Diagnostic(vs.meta.location, f"spec.gateways[{i}]", msg, Severity.WARNING, "dangling")
                )
    return out
