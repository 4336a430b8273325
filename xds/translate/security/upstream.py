"""DestinationRule trafficPolicy.tls -> the outbound cluster's transport socket (istio-mapping.md §2).

DISABLE: plaintext (also turns auto-mTLS off); SIMPLE: UpstreamTlsContext with SNI and a validation context
(caCertificates file, else the system roots; none with insecureSkipVerify); MUTUAL: SIMPLE plus the client
certificate files; ISTIO_MUTUAL: the mesh context (SDS `default`/`ROOTCA`, SNI `outbound_.<port>_.<subset>_.
<fqdn>`, ALPN istio, SANs = the destination's service accounts + the ServiceEntry's subjectAltNames).
Precedence (istiod): subset portLevelSettings > subset > DR portLevelSettings > DR.
"""

from __future__ import annotations

import operator
import os
import ssl
from functools import lru_cache
from typing import Any

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls
from envoy_data_plane.envoy.type.matcher import v3 as m
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.model.mesh import MeshConfig
from xds.model.resources import DestinationRule, Service, TrafficPolicy
from xds.model.security import ClientTLS
from xds.translate.envoy_core import ADS
from xds.translate.security import mtls

# Envoy's system_root_certs is not implemented (it would verify nothing): point at the OS bundle, as istiod
# does with its platform default. The proxies run on this host, so the control plane's bundle is theirs.
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, BSD
)


@lru_cache(maxsize=1)
def system_ca_bundle() -> str:
    found = ssl.get_default_verify_paths().cafile
    if found and os.path.isfile(found):
        return found
    return next((b for b in _SYSTEM_BUNDLES if os.path.isfile(b)), _SYSTEM_BUNDLES[0])


_SAN_TYPES = (tls.SubjectAltNameMatcherSanType.DNS, tls.SubjectAltNameMatcherSanType.URI)


def _tls_of(policy: TrafficPolicy | None, port: int | None) -> ClientTLS | None:
    if policy is None:
        return None
    at_port = policy.for_port(port) if port is not None else None
    return (at_port.tls if at_port is not None else None) or policy.tls


def effective_tls(rule: DestinationRule | None, subset: str, port: int | None) -> ClientTLS | None:
    """The tls settings of cluster (subset, port), or None when no DestinationRule sets any."""
    if rule is None:
        return None
    found = rule.subset(subset) if subset else None
    return _tls_of(found.traffic_policy if found else None, port) or _tls_of(rule.traffic_policy, port)


def any_client_tls(config: MeshConfig) -> bool:
    """Does any DestinationRule (top level, subset or port level) set tls?"""
    rules = config.destination_rules
    last = _LAST_TLS_ANSWER
    if len(last) == 2 and len(last[0]) == len(rules) and all(map(operator.is_, last[0], rules)):
        return bool(last[1])  # the same rule objects as last time (hashing 1,000 rules cost ~3 ms)
    answer = _any_tls(rules)
    _LAST_TLS_ANSWER[:] = [rules, answer]
    return answer


_LAST_TLS_ANSWER: list[Any] = []


def _any_tls(rules: tuple[DestinationRule, ...]) -> bool:
    policies = [r.traffic_policy for r in rules] + [s.traffic_policy for r in rules for s in r.subsets]
    return any(
        p is not None and (p.tls is not None or any(pl.tls is not None for _, pl in p.port_level))
        for p in policies
    )


def mesh_sans(
    service: Service, trust_domain: str, verified: tuple[tuple[str, tuple[str, ...]], ...] = ()
) -> list[str]:
    """istiod: the destination's service accounts plus the ServiceEntry's subjectAltNames (verified: the
    credentials' accounts of endpoints served by connected proxies, mtls.service_sans)."""
    return sorted({*mtls.service_sans(service, trust_domain, verified), *service.subject_alt_names})


def _file(path: str) -> core.DataSource:
    return core.DataSource(filename=path)


def _san_matchers(sans: tuple[str, ...]) -> list[tls.SubjectAltNameMatcher]:
    # ClientTLSSettings.subjectAltNames do not say the SAN type: accept a DNS or a URI SAN equal to each
    return [
        tls.SubjectAltNameMatcher(san_type=t, matcher=m.StringMatcher(exact=s))
        for s in sans
        for t in _SAN_TYPES
    ]


def simple_context(settings: ClientTLS, host: str) -> tls.UpstreamTlsContext:
    common = tls.CommonTlsContext()
    if not settings.insecure_skip_verify:
        validation = tls.CertificateValidationContext(
            match_typed_subject_alt_names=_san_matchers(settings.subject_alt_names)
        )
        if settings.ca_pem:
            validation.trusted_ca = core.DataSource(inline_string=settings.ca_pem)
        elif settings.ca_certificates:
            validation.trusted_ca = _file(settings.ca_certificates)
        else:  # istiod (VERIFY_CERTIFICATE_AT_CLIENT): verify against the system's trusted roots
            validation.trusted_ca = _file(system_ca_bundle())
        common.validation_context = validation
    if settings.mode == "MUTUAL":
        common.tls_certificates = [
            tls.TlsCertificate(
                certificate_chain=_file(settings.client_certificate), private_key=_file(settings.private_key)
            )
        ]
    sni = settings.sni or ("" if host.startswith("*") else host)
    return tls.UpstreamTlsContext(common_tls_context=common, sni=sni)


def transport_socket(
    settings: ClientTLS,
    service: Service,
    port: int,
    subset: str,
    trust_domain: str,
    sds: core.ConfigSource | None = None,
    verified: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> core.TransportSocket | None:
    """None = plaintext (DISABLE). verified: see mesh_sans."""
    if settings.mode == "DISABLE":
        return None
    if settings.mode == "ISTIO_MUTUAL":
        sans = list(settings.subject_alt_names) or mesh_sans(service, trust_domain, verified)
        return mtls.upstream_transport_socket(port, subset, service.host, sans, settings.sni, sds or ADS)
    ctx = simple_context(settings, service.host)
    return core.TransportSocket(name=mtls.TLS_SOCKET, typed_config=AnyMsg.pack(ctx))
