"""BackendTLSPolicy -> a DestinationRule (xds.model) for the target Service: TLS to its endpoints with the
policy's hostname as SNI, its subjectAltNames (or that hostname) as the names the certificate must carry,
and the CA bundle of a ConfigMap (key ca.crt, applied like any document: there is no API server) or the
system's roots (wellKnownCACertificates: System). A sectionName targets one port of the Service.

When no CA is usable (ConfigMaps missing, of another kind, or an unknown well-known set) the connections
must fail (the spec: the client gets a 5xx), so the rule still says TLS, trusting a CA whose key no one
has: no backend certificate verifies. Policies are applied oldest first (then namespace/name); a later one
for the same target and section is not applied (Accepted False Conflicted).

The rule applies wherever the translator uses DestinationRules (gateways, and sidecars calling the Service:
implementation-specific in the spec). A written DestinationRule for the same host in the same namespace
competes with it as two DestinationRules do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from xds.diagnostics import Diagnostic, Severity
from xds.gatewayapi import objects
from xds.gatewayapi.routes import DOMAIN_SUFFIX
from xds.gatewayapi.status import Condition, ObjectStatus, ParentStatus, failed, ok
from xds.model.resources import DestinationRule, Meta, Service, TrafficPolicy
from xds.model.security import ClientTLS

CA_KEY = "ca.crt"
SYSTEM = "System"


@dataclass
class PolicyOutcome:
    rules: list[DestinationRule] = field(default_factory=list)
    statuses: list[ObjectStatus] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


# A self-signed CA certificate whose private key was thrown away when it was made: trusting only it verifies
# no backend (a constant, so every control plane builds the same bytes).
UNTRUSTED_CA = """\
-----BEGIN CERTIFICATE-----
MIIBaDCCAQ2gAwIBAgIULNtUDngqmujyNNMjT2bGL4iyOD0wCgYIKoZIzj0EAwIw
KTEnMCUGA1UEAwwebWVjaGE6IG5vIHZhbGlkIENBIGNlcnRpZmljYXRlMB4XDTI2
MTIwNjIzNDY1NloXDTM2MTIwNDIzNDY1NlowKTEnMCUGA1UEAwwebWVjaGE6IG5v
IHZhbGlkIENBIGNlcnRpZmljYXRlMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
V73MUd3zlDHNNcvqPjwHKIOZzspmnrAFBMIhSDpDrCxGLlC2hs1rW4TKmXwzkocf
EhpqLoaA2C1NHPq/FmYhuKMTMBEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNJADBGAiEA6X7j9RY20dHXnxA6VHuffeVZI+AAuF5RBsPfOrFKDxUCIQCcN/yE
r28uC4dxR8qd2pYJxuRd/fqNvLEs0E8ZrbLDDg==
-----END CERTIFICATE-----
"""


@lru_cache(maxsize=64)
def _certificates(pem: str) -> bool:
    """Does pem hold one or more parseable X.509 certificates (and nothing else that looks like one)?"""
    from cryptography import x509

    try:
        return bool(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError:
        return False


def _ca(
    policy: objects.BackendTLSPolicy, config_maps: Mapping[tuple[str, str], objects.ConfigMap]
) -> tuple[str | None, list[Condition]]:
    """(CA PEM, "" = the system roots, None = none usable; the failed conditions)."""
    ns = policy.meta.namespace
    if policy.well_known:
        if policy.well_known == SYSTEM:
            return "", []
        msg = f"wellKnownCACertificates {policy.well_known!r} is not supported (only {SYSTEM})"
        return None, [failed("Accepted", "Invalid", msg)]
    bundles: list[str] = []
    problems: list[tuple[str, str]] = []
    for i, (group, kind, name) in enumerate(policy.ca_refs):
        where = f"caCertificateRefs[{i}]"
        if (group, kind) != ("", "ConfigMap"):
            problems.append(
                ("InvalidKind", f"{where}: unsupported kind {f'{group}/' if group else ''}{kind}")
            )
            continue
        found = config_maps.get((ns, name))
        pem = dict(found.data).get(CA_KEY, "") if found is not None else ""
        if found is None:
            problems.append(("InvalidCACertificateRef", f"{where}: ConfigMap {ns}/{name} not found"))
        elif not _certificates(pem):  # Envoy would refuse the whole cluster
            msg = f"{where}: ConfigMap {ns}/{name} has no valid PEM certificate under key {CA_KEY}"
            problems.append(("InvalidCACertificateRef", msg))
        else:
            bundles.append(pem.strip() + "\n")
    conditions = []
    if problems:
        conditions.append(failed("ResolvedRefs", problems[0][0], "; ".join(m for _, m in problems)))
    if not bundles:
        conditions.append(failed("Accepted", "NoValidCACertificate", "no valid CA certificate"))
        return None, conditions
    return "".join(bundles), conditions


def apply_policies(
    policies: list[objects.BackendTLSPolicy],
    config_maps: Mapping[tuple[str, str], objects.ConfigMap],
    services: Mapping[str, Service],
    ancestors: Mapping[str, list[objects.ObjectMeta]],
) -> PolicyOutcome:
    """ancestors: service host -> the Mecha Gateways whose routes send to it (status.ancestors)."""
    out = PolicyOutcome()
    taken: dict[tuple[str, str], str] = {}  # (host, sectionName) -> the policy applied there
    applied: dict[str, list[tuple[objects.BackendTLSPolicy, Service, str, str | None]]] = {}
    for policy in sorted(policies, key=lambda p: (p.meta.created, p.meta.ref)):
        ns, where = policy.meta.namespace, policy.meta.location
        conditions: list[Condition] = []
        ca, ca_conditions = _ca(policy, config_maps)
        conditions += ca_conditions
        hosts: list[str] = []
        for i, (group, kind, name, section) in enumerate(policy.targets):
            host = f"{name}.{ns}.{DOMAIN_SUFFIX}"
            service = services.get(host)
            problem = ""
            if (group, kind) != ("", "Service"):
                problem = (
                    f"targetRefs[{i}]: unsupported kind {f'{group}/' if group else ''}{kind} (only Services)"
                )
            elif service is None:
                problem = f"targetRefs[{i}]: Service {ns}/{name} not found"
            elif section and not any(p.name == section for p in service.ports):
                problem = f"targetRefs[{i}]: Service {ns}/{name} has no port named {section!r}"
            elif (host, section) in taken:
                hosts.append(host)  # its Gateways are told it is not applied
                other = taken[host, section]
                problem = f"targetRefs[{i}]: Service {ns}/{name} already has BackendTLSPolicy {other}"
                conditions.append(failed("Accepted", "Conflicted", problem))
            if problem:
                out.diagnostics.append(
                    Diagnostic(
                        where, f"spec.targetRefs[{i}]", problem, Severity.WARNING, "gateway-api-policy"
                    )
                )
                if not any(c.type == "Accepted" for c in conditions):
                    conditions.append(failed("Accepted", "TargetNotFound", problem))
                continue
            assert service is not None
            taken[host, section] = policy.meta.ref
            hosts.append(host)
            applied.setdefault(host, []).append((policy, service, section, ca))
        for c in conditions:
            if c.status == "False" and c.reason not in ("Conflicted", "TargetNotFound"):
                field_ = "spec.validation" if c.type == "Accepted" else "spec.validation.caCertificateRefs"
                message = f"{c.reason}: {c.message}"
                out.diagnostics.append(
                    Diagnostic(where, field_, message, Severity.WARNING, "gateway-api-policy")
                )
        if not any(c.type == "Accepted" for c in conditions):
            conditions.insert(0, ok("Accepted", "Accepted", "Policy accepted"))
        if not any(c.type == "ResolvedRefs" for c in conditions):
            conditions.append(ok("ResolvedRefs", "ResolvedRefs", "All references resolved"))
        gateways = {g.ref: g for h in hosts for g in ancestors.get(h, [])}
        parents = [
            ParentStatus(
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "namespace": g.namespace,
                    "name": g.name,
                },
                conditions,
            )
            for _, g in sorted(gateways.items())
        ]
        out.statuses.append(ObjectStatus(policy.meta, ancestors=parents))
    out.rules = [_rule(host, entries, n) for n, (host, entries) in enumerate(applied.items())]
    return out


def _settings(policy: objects.BackendTLSPolicy, ca: str | None) -> ClientTLS:
    return ClientTLS(
        mode="SIMPLE",
        sni=policy.hostname,
        subject_alt_names=policy.subject_alt_names or (policy.hostname,),
        ca_pem=UNTRUSTED_CA if ca is None else ca,
    )


def _rule(
    host: str, entries: list[tuple[objects.BackendTLSPolicy, Service, str, str | None]], n: int
) -> DestinationRule:
    """One DestinationRule per Service (two for one host would compete): the policy without sectionName is
    its TLS, each sectionName's policy that port's, which wins there (the more specific target)."""
    whole: ClientTLS | None = None
    ports: list[tuple[int, TrafficPolicy]] = []
    for policy, service, section, ca in entries:
        if section:
            port = next(p.number for p in service.ports if p.name == section)
            ports.append((port, TrafficPolicy(tls=_settings(policy, ca))))
        else:
            whole = _settings(policy, ca)
    first = entries[0][0]
    name = f"gateway-api.backendtls.{first.meta.name}.{n}"
    meta = Meta("DestinationRule", first.meta.namespace, name, first.meta.location)
    return DestinationRule(meta, host, TrafficPolicy(tls=whole, port_level=tuple(ports)))
