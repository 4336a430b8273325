"""Security kinds (PeerAuthentication, AuthorizationPolicy, RequestAuthentication): field tables and IR.

The documents stay CarriedResource in MeshConfig (schema-checked by these tables, so bad fields are refused
with file/resource/field); `security_policies(config.carried)` parses them once into frozen, hashable IR.
Fields Mecha cannot honour are errors here, not warnings: silently ignoring part of a security policy
would open or close traffic nobody asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from xds.model.meta import CarriedResource, Labels, Meta
from xds.model.schema import AnyMap, Bool, Enum, F, ListOf, MapOf, Obj, Report, Spec, Str

ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace: policies here apply mesh-wide
MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
CLIENT_TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
DRY_RUN_ANNOTATION = "istio.io/dry-run"
NO = False


class PortKeyMap(Spec):
    """portLevelMtls: keys are port numbers (YAML gives ints or strings)."""

    name = "a map port -> value"

    def __init__(self, value: Spec) -> None:
        self.value = value

    def check(self, value: Any, path: str, report: Report) -> bool:
        if not isinstance(value, dict):
            return self._wrong(value, path, report)
        ok = True
        for k, v in value.items():
            try:
                port = int(str(k))
            except ValueError:
                port = 0
            if not 0 < port < 65536:
                report("error", f"{path}.{k}", f"{k!r} is not a port number 1-65535", "wrong-type")
                ok = False
            ok = self.value.check(v, f"{path}.{k}", report) and ok
        return ok


_SELECTOR = Obj({"matchLabels": F(MapOf(Str))})
_TARGET_REF = F(AnyMap, NO, "targetRef(s) need the Kubernetes Gateway API; use selector")
_MTLS = Obj({"mode": F(Enum(*MTLS_MODES))})
PEER_AUTHENTICATION = Obj({"selector": F(_SELECTOR), "mtls": F(_MTLS), "portLevelMtls": F(PortKeyMap(_MTLS))})

_STRS = F(ListOf(Str))
_SOURCE = Obj(
    {
        "principals": _STRS,
        "notPrincipals": _STRS,
        "requestPrincipals": _STRS,
        "notRequestPrincipals": _STRS,
        "namespaces": _STRS,
        "notNamespaces": _STRS,
        "ipBlocks": _STRS,
        "notIpBlocks": _STRS,
        "remoteIpBlocks": _STRS,
        "notRemoteIpBlocks": _STRS,
        "serviceAccounts": F(ListOf(Str), NO, "use principals"),
        "notServiceAccounts": F(ListOf(Str), NO, "use notPrincipals"),
    }
)
_OPERATION = Obj(
    {
        "hosts": _STRS,
        "notHosts": _STRS,
        "ports": _STRS,
        "notPorts": _STRS,
        "methods": _STRS,
        "notMethods": _STRS,
        "paths": _STRS,
        "notPaths": _STRS,
    }
)
_CONDITION = Obj({"key": F(Str), "values": _STRS, "notValues": _STRS})
_RULE = Obj(
    {
        "from": F(ListOf(Obj({"source": F(_SOURCE)}))),
        "to": F(ListOf(Obj({"operation": F(_OPERATION)}))),
        "when": F(ListOf(_CONDITION)),
    }
)
AUTHORIZATION_POLICY = Obj(
    {
        "selector": F(_SELECTOR),
        "targetRef": _TARGET_REF,
        "targetRefs": _TARGET_REF,
        "action": F(Enum("ALLOW", "DENY", "AUDIT", "CUSTOM")),
        "provider": F(AnyMap, NO, "CUSTOM (ext_authz) providers"),
        "rules": F(ListOf(_RULE)),
    }
)

_JWT_HEADER = Obj({"name": F(Str), "prefix": F(Str)})
_JWT_RULE = Obj(
    {
        "issuer": F(Str),
        "audiences": _STRS,
        "jwksUri": F(Str),
        "jwks": F(Str),
        "fromHeaders": F(ListOf(_JWT_HEADER)),
        "fromParams": _STRS,
        "fromCookies": _STRS,
        "outputPayloadToHeader": F(Str),
        "forwardOriginalToken": F(Bool),
        "outputClaimToHeaders": F(ListOf(Obj({"header": F(Str), "claim": F(Str)}))),
        "timeout": F(Str, NO, "the JWKS is inlined by the control plane"),
    }
)
REQUEST_AUTHENTICATION = Obj(
    {
        "selector": F(_SELECTOR),
        "targetRef": _TARGET_REF,
        "targetRefs": _TARGET_REF,
        "jwtRules": F(ListOf(_JWT_RULE)),
    }
)

# DestinationRule trafficPolicy.tls (ClientTLSSettings); used by xds.model.specs
CLIENT_TLS = Obj(
    {
        "mode": F(Enum(*CLIENT_TLS_MODES)),
        "clientCertificate": F(Str),
        "privateKey": F(Str),
        "caCertificates": F(Str),
        "subjectAltNames": _STRS,
        "sni": F(Str, differs="unset: SIMPLE/MUTUAL send the service host (istiod: auto SNI from the Host)"),
        "insecureSkipVerify": F(Bool),
        "credentialName": F(Str, NO, "Kubernetes secrets; use the clientCertificate/privateKey files"),
        "caCrl": F(Str, NO, "certificate revocation lists are not emitted"),
    }
)

SECURITY_SPECS: dict[str, Spec] = {
    "PeerAuthentication": PEER_AUTHENTICATION,
    "AuthorizationPolicy": AUTHORIZATION_POLICY,
    "RequestAuthentication": REQUEST_AUTHENTICATION,
}


# ---- IR ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """DestinationRule trafficPolicy.tls: how a proxy talks TLS to the destination's endpoints."""

    mode: str = "DISABLE"
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    subject_alt_names: tuple[str, ...] = ()
    sni: str = ""
    insecure_skip_verify: bool = False
    ca_pem: str = ""  # an inline CA bundle (Gateway API BackendTLSPolicy ConfigMaps), instead of a file


def client_tls(raw: dict[str, Any] | None) -> ClientTLS | None:
    if raw is None:
        return None
    return ClientTLS(
        mode=str(raw.get("mode") or "DISABLE"),
        client_certificate=str(raw.get("clientCertificate") or ""),
        private_key=str(raw.get("privateKey") or ""),
        ca_certificates=str(raw.get("caCertificates") or ""),
        subject_alt_names=_t(raw.get("subjectAltNames")),
        sni=str(raw.get("sni") or ""),
        insecure_skip_verify=bool(raw.get("insecureSkipVerify")),
    )


@dataclass(frozen=True, slots=True)
class PeerAuthentication:
    meta: Meta
    selector: Labels | None  # None = namespace-wide (mesh-wide in the root namespace)
    mode: str = "UNSET"
    port_modes: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Source:
    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthzRule:
    sources: tuple[Source, ...] = ()
    operations: tuple[Operation, ...] = ()
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    meta: Meta
    selector: Labels | None
    action: str = "ALLOW"
    rules: tuple[AuthzRule, ...] = ()
    dry_run: bool = False  # annotation istio.io/dry-run: "true" -> shadow rules only


@dataclass(frozen=True, slots=True)
class JwtRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str = ""  # inline JWKS JSON (jwks, or read from a file:// jwksUri)
    jwks_uri: str = ""
    from_headers: tuple[tuple[str, str], ...] = ()  # (name, prefix)
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str = ""
    forward_original_token: bool = False
    output_claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, claim)


@dataclass(frozen=True, slots=True)
class RequestAuthentication:
    meta: Meta
    selector: Labels | None
    rules: tuple[JwtRule, ...] = ()


@dataclass(frozen=True, slots=True)
class SecurityPolicies:
    peer: tuple[PeerAuthentication, ...] = ()
    authz: tuple[AuthorizationPolicy, ...] = ()
    authn: tuple[RequestAuthentication, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.peer or self.authz or self.authn)


def _t(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values or ())


def _selector(spec: dict[str, Any]) -> Labels | None:
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return tuple(sorted((str(k), str(v)) for k, v in labels.items())) or None


def read_jwks_uri(uri: str) -> str:
    """file:// JWKS are read by the control plane and inlined (istiod inlines fetched JWKS the same way)."""
    path = uri.removeprefix("file://")
    with open(path, encoding="utf-8") as f:
        return f.read()


def jwks_uri_target(uri: str, hosts: Mapping[str, object], namespace: str) -> tuple[str, int] | None:
    """(service host, port) when an http(s) jwksUri names a mesh service (a short name resolves in the
    policy's namespace); None otherwise. istiod sends those through the service's cluster (remote_jwks)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = parts.hostname
    for candidate in (host, f"{host}.{namespace}.svc.cluster.local" if "." not in host else host):
        if candidate in hosts:
            return candidate, port
    return None


def _jwt_rule(raw: dict[str, Any], resolved: Mapping[str, str]) -> JwtRule:
    """resolved: uri -> JWKS text of http(s) jwksUris outside the mesh and file:// ones, resolved with the
    version (xds.inputs): inlined as local_jwks, like istiod's "istiod fetches" mode. The translator
    reads nothing itself, so every replica inlines the same stored copy."""
    uri = str(raw.get("jwksUri") or "")
    jwks = str(raw.get("jwks") or "")
    if not jwks and uri:
        jwks = resolved.get(uri, "")  # empty for in-mesh URIs: remote_jwks through the mesh cluster
    return JwtRule(
        issuer=str(raw.get("issuer") or ""),
        audiences=_t(raw.get("audiences")),
        jwks=jwks,
        jwks_uri=uri,
        from_headers=tuple(
            (str(h.get("name", "")), str(h.get("prefix", ""))) for h in raw.get("fromHeaders") or ()
        ),
        from_params=_t(raw.get("fromParams")),
        from_cookies=_t(raw.get("fromCookies")),
        output_payload_to_header=str(raw.get("outputPayloadToHeader") or ""),
        forward_original_token=bool(raw.get("forwardOriginalToken")),
        output_claim_to_headers=tuple(
            (str(c.get("header", "")), str(c.get("claim", ""))) for c in raw.get("outputClaimToHeaders") or ()
        ),
    )


def _source(raw: dict[str, Any]) -> Source:
    return Source(
        principals=_t(raw.get("principals")),
        not_principals=_t(raw.get("notPrincipals")),
        request_principals=_t(raw.get("requestPrincipals")),
        not_request_principals=_t(raw.get("notRequestPrincipals")),
        namespaces=_t(raw.get("namespaces")),
        not_namespaces=_t(raw.get("notNamespaces")),
        ip_blocks=_t(raw.get("ipBlocks")),
        not_ip_blocks=_t(raw.get("notIpBlocks")),
        remote_ip_blocks=_t(raw.get("remoteIpBlocks")),
        not_remote_ip_blocks=_t(raw.get("notRemoteIpBlocks")),
    )


def _operation(raw: dict[str, Any]) -> Operation:
    return Operation(
        hosts=_t(raw.get("hosts")),
        not_hosts=_t(raw.get("notHosts")),
        ports=_t(raw.get("ports")),
        not_ports=_t(raw.get("notPorts")),
        methods=_t(raw.get("methods")),
        not_methods=_t(raw.get("notMethods")),
        paths=_t(raw.get("paths")),
        not_paths=_t(raw.get("notPaths")),
    )


def parse_policy(
    res: CarriedResource, jwks: tuple[tuple[str, str], ...] = ()
) -> PeerAuthentication | AuthorizationPolicy | RequestAuthentication:
    spec: dict[str, Any] = json.loads(res.spec_json)
    kind = res.meta.kind
    if kind == "PeerAuthentication":
        ports = spec.get("portLevelMtls") or {}
        return PeerAuthentication(
            res.meta,
            _selector(spec),
            str((spec.get("mtls") or {}).get("mode") or "UNSET"),
            tuple(sorted((int(str(k)), str((v or {}).get("mode") or "UNSET")) for k, v in ports.items())),
        )
    if kind == "AuthorizationPolicy":
        rules = tuple(
            AuthzRule(
                sources=tuple(_source(f.get("source") or {}) for f in r.get("from") or ()),
                operations=tuple(_operation(t.get("operation") or {}) for t in r.get("to") or ()),
                conditions=tuple(
                    Condition(str(c.get("key", "")), _t(c.get("values")), _t(c.get("notValues")))
                    for c in r.get("when") or ()
                ),
            )
            for r in spec.get("rules") or ()
        )
        dry_run = dict(res.annotations).get(DRY_RUN_ANNOTATION, "").strip().lower() in ("true", "1", "t")
        return AuthorizationPolicy(
            res.meta, _selector(spec), str(spec.get("action") or "ALLOW"), rules, dry_run
        )
    if kind == "RequestAuthentication":
        rules_raw = spec.get("jwtRules") or ()
        resolved = dict(jwks)
        jwt_rules = tuple(_jwt_rule(r, resolved) for r in rules_raw)
        return RequestAuthentication(res.meta, _selector(spec), jwt_rules)
    raise ValueError(f"{kind} is not a security kind")


@lru_cache(maxsize=8)
def security_policies(
    carried: tuple[CarriedResource, ...], jwks: tuple[tuple[str, str], ...] = ()
) -> SecurityPolicies:
    """Typed policies of a config (memoized on the carried tuple and the resolved JWKS, config.inputs:
    unchanged config -> the same object)."""
    peer: list[PeerAuthentication] = []
    authz: list[AuthorizationPolicy] = []
    authn: list[RequestAuthentication] = []
    for res in carried:
        if res.meta.kind not in SECURITY_SPECS:
            continue
        policy = parse_policy(res, jwks)
        if isinstance(policy, PeerAuthentication):
            peer.append(policy)
        elif isinstance(policy, AuthorizationPolicy):
            authz.append(policy)
        else:
            authn.append(policy)
    return SecurityPolicies(tuple(peer), tuple(authz), tuple(authn))


def selects(selector: Labels | None, policy_ns: str, namespace: str, labels: Labels | dict[str, str]) -> bool:
    """istiod: a policy applies to workloads of its namespace matching the selector; root-namespace policies
    without a selector apply mesh-wide (with a selector: root-namespace workloads only)."""
    if policy_ns != namespace and not (policy_ns == ROOT_NAMESPACE and selector is None):
        return False
    mine = labels if isinstance(labels, dict) else dict(labels)
    return all(mine.get(k) == v for k, v in selector or ())
