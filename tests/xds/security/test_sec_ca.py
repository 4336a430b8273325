"""The CA: SPIFFE leaf certificates chained to the root, SDS secrets, rotation at half the lifetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls

from xds import types
from xds.ca import ROOT_SECRET, WORKLOAD_SECRET, CertificateAuthority, WorkloadCertificates, spiffe_id


def test_leaf_certificate_carries_the_spiffe_id_and_chains_to_the_root() -> None:
    ca = CertificateAuthority("example.org")
    sid = spiffe_id("example.org", "shop", "cart")
    issued = ca.issue((sid,), timedelta(minutes=5))
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [sid]
    assert cert.issuer == ca.root.subject and cert.serial_number == issued.serial
    root_key = ca.root.public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca.root)  # raises when the signature or issuer is wrong
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(minutes=4) < lifetime <= timedelta(minutes=5)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="trust domain"):
        CertificateAuthority("spiffe://x")
    ca = CertificateAuthority()
    with pytest.raises(ValueError, match="positive"):
        ca.issue(("spiffe://cluster.local/ns/a/sa/b",), timedelta(0))
    with pytest.raises(ValueError, match="at least one"):
        ca.issue((), timedelta(hours=1))


def test_root_can_be_loaded_from_pem() -> None:
    first = CertificateAuthority()
    from cryptography.hazmat.primitives import serialization

    key_pem = first._key.private_bytes(  # the PEM an operator would mount
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    again = CertificateAuthority(root_cert_pem=first.root_pem, root_key_pem=key_pem)
    leaf = again.issue(("spiffe://cluster.local/ns/a/sa/b",), timedelta(hours=1))
    x509.load_pem_x509_certificate(leaf.cert_pem).verify_directly_issued_by(first.root)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_secrets_are_reused_until_half_the_lifetime_then_reissued() -> None:
    clock = Clock()
    certs = WorkloadCertificates(CertificateAuthority(), ttl=timedelta(hours=1), clock=clock)
    ids = ("spiffe://cluster.local/ns/default/sa/reviews",)
    default, root = certs.secrets("p1", ids)
    assert default.type_url == types.SECRET and (default.name, root.name) == (WORKLOAD_SECRET, ROOT_SECRET)
    parsed = tls.Secret.parse(default.body)
    assert b"BEGIN CERTIFICATE" in parsed.tls_certificate.certificate_chain.inline_bytes
    assert b"PRIVATE KEY" in parsed.tls_certificate.private_key.inline_bytes
    assert tls.Secret.parse(root.body).validation_context.trusted_ca.inline_bytes == certs.ca.root_pem
    assert certs.secrets("p1", ids)[0] is default  # unchanged: same resource, no push
    clock.now += timedelta(minutes=29)
    assert certs.due() == [] and certs.secrets("p1", ids)[0] is default
    clock.now += timedelta(minutes=2)
    assert certs.due() == ["p1"]
    serial = certs.current("p1").serial  # type: ignore[union-attr]
    renewed, _ = certs.secrets("p1", ids)
    assert renewed is not default and certs.current("p1").serial != serial  # type: ignore[union-attr]
    assert certs.due() == [] and certs.issued == 2


def test_identity_change_reissues_and_retain_forgets_gone_proxies() -> None:
    certs = WorkloadCertificates(CertificateAuthority(), ttl=timedelta(hours=1))
    a, _ = certs.secrets("p1", ("spiffe://cluster.local/ns/default/sa/a",))
    b, _ = certs.secrets("p1", ("spiffe://cluster.local/ns/default/sa/b",))
    assert a is not b
    certs.secrets("p2", ("spiffe://cluster.local/ns/default/sa/c",))
    certs.retain({"p2"})
    assert certs.current("p1") is None and certs.current("p2") is not None
    assert 0 < (certs.seconds_to_next_rotation() or 0) <= 1800
