"""A small CA (the `cryptography` package): one self-signed root, short-lived workload certificates.

Workload certificates look like Istio's: an empty subject, a critical URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`,
serverAuth + clientAuth, EC P-256 keys (fast to generate: ~1,000 per second on one core).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_TRUST_DOMAIN = "cluster.local"
ROOT_TTL = timedelta(days=3650)
ROOT_CERT_FILE = "root-cert.pem"  # istiod's plugged-in CA names (cacerts secret: root-cert.pem, ca-key.pem)
ROOT_KEY_FILE = "root-key.pem"
CLOCK_SKEW = timedelta(minutes=1)  # not_before is backdated so a peer whose clock lags still accepts it


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True, slots=True)
class IssuedCert:
    spiffe_ids: tuple[str, ...]
    cert_pem: bytes
    key_pem: bytes
    serial: int
    not_before: datetime
    not_after: datetime

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")


class CertificateAuthority:
    """Root key and certificate, generated at start (or loaded from PEM), and the issuing of leaf certs."""

    def __init__(
        self,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        root_cert_pem: bytes | None = None,
        root_key_pem: bytes | None = None,
    ) -> None:
        if not trust_domain or "/" in trust_domain or ":" in trust_domain:
            raise ValueError(f"trust domain {trust_domain!r}: expected a DNS-like name such as cluster.local")
        self.trust_domain = trust_domain
        if (root_cert_pem is None) != (root_key_pem is None):
            raise ValueError("give both the root certificate and its key, or neither")
        if root_cert_pem is not None and root_key_pem is not None:
            key = serialization.load_pem_private_key(root_key_pem, password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("the root key must be an EC private key")
            self._key: ec.EllipticCurvePrivateKey = key
            self.root = x509.load_pem_x509_certificate(root_cert_pem)
        else:
            self._key = ec.generate_private_key(ec.SECP256R1())
            self.root = self._self_signed_root()
        self.root_pem = self.root.public_bytes(serialization.Encoding.PEM)
        self._root_ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())

    @classmethod
    def load_or_create(
        cls, directory: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN
    ) -> CertificateAuthority:
        """The root kept in `directory` (created on first use, key file mode 0600), so a restarted control
        plane signs with the same root and the certificates proxies already hold stay valid."""
        cert_path, key_path = directory / ROOT_CERT_FILE, directory / ROOT_KEY_FILE
        if cert_path.exists() or key_path.exists():
            try:
                cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
            except OSError as exc:
                raise ValueError(
                    f"CA directory {directory}: cannot read {exc.filename}: {exc.strerror}"
                ) from None
            try:
                ca = cls(trust_domain, cert_pem, key_pem)
            except ValueError as exc:
                raise ValueError(f"CA directory {directory}: {exc}") from None
            stored = ca.root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            if stored and stored[0].value != trust_domain:
                raise ValueError(
                    f"CA directory {directory}: the root was made for trust domain {stored[0].value!r}, "
                    f"not {trust_domain!r} (use another MECHA_CA_DIR or remove the folder)"
                )
            return ca
        ca = cls(trust_domain)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)  # it holds the root key, like the rest of the state folder
            _write_private(key_path, ca._key_pem())
            _write_private(cert_path, ca.root_pem)  # last: its presence means the pair is complete
        except OSError as exc:
            raise ValueError(
                f"CA directory {directory}: cannot write {exc.filename}: {exc.strerror}"
            ) from None
        return ca

    def _key_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def _self_signed_root(self) -> x509.Certificate:
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain)])
        public = self._key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + ROOT_TTL)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def issue(self, spiffe_ids: tuple[str, ...], ttl: timedelta) -> IssuedCert:
        """A fresh key pair and a leaf certificate carrying every SPIFFE id as a URI SAN."""
        if not spiffe_ids:
            raise ValueError("a workload certificate needs at least one SPIFFE id")
        key = ec.generate_private_key(ec.SECP256R1())
        cert, serial, not_before, not_after = self._leaf(
            key.public_key(), [x509.UniformResourceIdentifier(s) for s in spiffe_ids], ttl
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return IssuedCert(
            spiffe_ids=tuple(spiffe_ids),
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key_pem,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
        )

    def sign_public_key(
        self, public_key: CertificatePublicKeyTypes, spiffe_ids: tuple[str, ...], ttl: timedelta
    ) -> bytes:
        """A leaf certificate (PEM) for a key the workload generated and keeps (its CSR's public key)."""
        if not spiffe_ids:
            raise ValueError("a workload certificate needs at least one SPIFFE id")
        sans = [x509.UniformResourceIdentifier(s) for s in spiffe_ids]
        return self._leaf(public_key, sans, ttl)[0].public_bytes(serialization.Encoding.PEM)

    def serving_certificate(
        self, dns_names: list[str], ips: list[str], ttl: timedelta
    ) -> tuple[bytes, bytes]:
        """(cert PEM, key PEM) of the control plane's own TLS servers (xDS, CA), verified against the root."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = self._leaf(key.public_key(), sans, ttl)[0]
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def _leaf(
        self, public_key: CertificatePublicKeyTypes, sans: list[x509.GeneralName], ttl: timedelta
    ) -> tuple[x509.Certificate, int, datetime, datetime]:
        if ttl <= timedelta(0):
            raise ValueError(f"certificate TTL must be positive, got {ttl}")
        now = datetime.now(UTC)
        not_before, not_after = now - CLOCK_SKEW, now + ttl
        serial = int.from_bytes(secrets.token_bytes(16), "big") >> 1  # positive, < 2^127
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.root.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._root_ski),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(sans),
                critical=True,  # empty subject: RFC 5280 requires the SAN to be critical
            )
            .sign(self._key, hashes.SHA256())
        )
        return cert, serial, not_before, not_after


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only (created 0600, never world-readable in between)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # O_CREAT honours the umask; an existing tmp file keeps its mode
    tmp.replace(path)
