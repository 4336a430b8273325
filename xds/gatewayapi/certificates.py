"""Listener tls.certificateRefs -> the credential a converted HTTPS server names (tls.credentialName), or the
listener's ResolvedRefs condition saying why not.

There is no API server to read Secrets from: a Secret NAME is the credential Mecha already serves to Istio
Gateways (`credentialName`: the files NAME/tls.crt + tls.key of the credentials folder). A Secret of the
Gateway's own namespace is the credential NAME, as an Istio Gateway's credentialName names a Secret of the
Gateway's namespace; a Secret of another namespace NS (allowed by a ReferenceGrant in NS) is the credential
NS/NAME (the folder NS/NAME). Whether the files exist is known only once the credentials are resolved: the
status endpoint passes the names found (`available`), the compile stage does not (None: assumed present; a
missing one skips the server, with an error, as for an Istio Gateway)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from cryptography import x509

from xds.gatewayapi import objects
from xds.gatewayapi.kinds import GATEWAY, GROUP
from xds.gatewayapi.status import Condition, failed

INVALID = "InvalidCertificateRef"
NOT_PERMITTED = "RefNotPermitted"


@dataclass(frozen=True)
class CertificateOutcome:
    credential: str = ""  # the credentialName served ("" = none can be)
    problem: Condition | None = None  # listener ResolvedRefs False when a reference is unusable
    notes: tuple[str, ...] = ()  # served, but not exactly as written


def has_certificate(pem: str) -> bool:
    """tls.crt holds PEM certificates that parse: a Secret with anything else is malformed, which the spec
    reports as InvalidCertificateRef (GatewayInvalidTLSConfiguration's malformed Secret)."""
    try:
        return bool(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError:
        return False


def credential_name(ref: objects.SecretRef, gateway_namespace: str) -> str:
    return ref.name if ref.namespace == gateway_namespace else f"{ref.namespace}/{ref.name}"


def _permitted(
    grants: Iterable[objects.ReferenceGrant], gateway_namespace: str, ref: objects.SecretRef
) -> bool:
    """A grant in the Secret's namespace lets Gateways of gateway_namespace refer to it."""
    for grant in grants:
        if grant.meta.namespace != ref.namespace:
            continue
        if (GROUP, GATEWAY, gateway_namespace) not in grant.sources:
            continue
        if any(t == ("", "Secret", name) for name in ("", ref.name) for t in grant.targets):
            return True
    return False


def resolve(
    gateway: objects.Gateway,
    listener: objects.Listener,
    grants: Iterable[objects.ReferenceGrant],
    available: Collection[str] | None,
) -> CertificateOutcome:
    """The first usable certificateRef of a Terminate listener (Envoy serves one certificate per listener
    here); any unusable reference makes ResolvedRefs False, with the spec's reason."""
    ns = gateway.meta.namespace
    problems: list[tuple[str, str]] = []
    usable: list[str] = []
    for ref in listener.certificate_refs:
        where = f"certificateRefs[{ref.index}]"
        if (ref.group, ref.kind) != ("", "Secret"):
            kind = f"{ref.group}/{ref.kind}" if ref.group else ref.kind
            problems.append((INVALID, f"{where}: unsupported kind {kind} (only core Secrets)"))
            continue
        if ref.namespace != ns and not _permitted(grants, ns, ref):
            secret = f"Secret {ref.namespace}/{ref.name}"
            msg = f"{where}: {secret} is not accessible to a Gateway in namespace {ns!r}"
            problems.append((NOT_PERMITTED, f"{msg} (missing a ReferenceGrant?)"))
            continue
        name = credential_name(ref, ns)
        if available is not None and name not in available:
            secret = f"Secret {ref.namespace}/{ref.name}"
            msg = f"{where}: {secret} not found or malformed (credential {name!r}: PEM tls.crt and tls.key)"
            problems.append((INVALID, msg))
            continue
        usable.append(name)
    if not listener.certificate_refs:
        problems.append((INVALID, "no certificateRefs: listener TLS options alone are not served"))
    notes = ("only the first usable certificateRef is served",) if len(usable) > 1 else ()
    problem = None
    if problems:
        # RefNotPermitted first: a missing grant is what to fix before anything else
        reason = NOT_PERMITTED if any(r == NOT_PERMITTED for r, _ in problems) else INVALID
        problem = failed("ResolvedRefs", reason, "; ".join(m for _, m in problems))
    return CertificateOutcome(usable[0] if usable else "", problem, notes)
