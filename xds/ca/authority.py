"""A small CA (the `cryptography` package): a self-signed root, or Istio's plug-in `cacerts` intermediate
(xds/ca/plugin.py), and short-lived workload certificates.

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

from xds.ca.plugin import SigningKey, chains_to, is_plugin_dir, load_plugin_ca
from xds.spiffe import DEFAULT_TRUST_DOMAIN, spiffe_id

__all__ = ["DEFAULT_TRUST_DOMAIN", "CertificateAuthority", "IssuedCert", "spiffe_id"]
ROOT_TTL = timedelta(days=3650)
ROOT_CERT_FILE = "root-cert.pem"  # istiod's plugged-in CA names (cacerts secret: root-cert.pem, ca-key.pem)
ROOT_KEY_FILE = "root-key.pem"
CLOCK_SKEW = timedelta(minutes=1)  # not_before is backdated so a peer whose clock lags still accepts it


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


@dataclass(frozen=True, slots=True)
class Signer:
    """One consistent signing state, swapped as a whole when the CA files change (a signature never mixes
    the old key with the new chain)."""

    key: SigningKey
    cert: x509.Certificate
    key_id: x509.AuthorityKeyIdentifier
    chain_pem: bytes  # intermediates appended after each leaf (plug-in CA); empty for a self-signed root
    bundle_pem: bytes  # the trust bundle served as ROOTCA: one root, or several while a root rotates
    digest: str = ""  # of the plug-in files it came from


def _signer(key: SigningKey, cert: x509.Certificate, chain_pem: bytes, bundle_pem: bytes,
            digest: str = "") -> Signer:  # fmt: skip
    try:  # leaves name the issuer's own SKI, so path building matches it
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return Signer(key, cert, key_id, chain_pem, bundle_pem, digest)


class CertificateAuthority:
    """The signing key and certificate (a generated self-signed root, or Istio's plug-in `cacerts`
    intermediate), the trust bundle, and the issuing of leaf certs."""

    def __init__(
        self,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        root_cert_pem: bytes | None = None,
        root_key_pem: bytes | None = None,
    ) -> None:
        if not trust_domain or "/" in trust_domain or ":" in trust_domain:
            raise ValueError(f"trust domain {trust_domain!r}: expected a DNS-like name such as cluster.local")
        self.trust_domain = trust_domain
        self.plugin_dir: Path | None = None  # set when signing as Istio's plug-in CA (reloadable)
        if (root_cert_pem is None) != (root_key_pem is None):
            raise ValueError("give both the root certificate and its key, or neither")
        if root_cert_pem is not None and root_key_pem is not None:
            key = serialization.load_pem_private_key(root_key_pem, password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("the root key must be an EC private key")
            cert = x509.load_pem_x509_certificate(root_cert_pem)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _self_signed_root(key, trust_domain)
        self._signer = _signer(key, cert, b"", cert.public_bytes(serialization.Encoding.PEM))

    @classmethod
    def from_plugin_dir(
        cls, directory: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN
    ) -> CertificateAuthority:
        """Istio's plug-in CA: sign with ca-key.pem/ca-cert.pem, chain cert-chain.pem, trust root-cert.pem."""
        ca = cls.__new__(cls)
        if not trust_domain or "/" in trust_domain or ":" in trust_domain:
            raise ValueError(f"trust domain {trust_domain!r}: expected a DNS-like name such as cluster.local")
        ca.trust_domain = trust_domain
        ca.plugin_dir = directory
        plugin = load_plugin_ca(directory)
        ca._signer = _signer(plugin.key, plugin.cert, plugin.chain_pem, plugin.bundle_pem, plugin.digest)
        return ca

    @property
    def root(self) -> x509.Certificate:
        """The certificate that signs leaves (the root itself, or the plug-in intermediate)."""
        return self._signer.cert

    @property
    def _key(self) -> SigningKey:
        return self._signer.key

    @property
    def root_pem(self) -> bytes:
        """The trust bundle (PEM, one or more roots): ROOTCA, the agents' root file, the CSR answer's end."""
        return self._signer.bundle_pem

    @property
    def chain_pem(self) -> bytes:
        """Intermediates between a leaf and the bundle's root (empty for Mecha's own root)."""
        return self._signer.chain_pem

    def trusts(self, chain_pem: bytes) -> bool:
        """Whether a chain this CA signed earlier still leads to a root of the current bundle."""
        return chains_to(chain_pem, self.root_pem)

    def reload(self) -> bool:
        """Re-read the plug-in files; True when they changed. ValueError (naming the file) leaves the CA
        signing as before, so a half-copied rotation never stops issuing."""
        if self.plugin_dir is None:
            return False
        plugin = load_plugin_ca(self.plugin_dir)
        if plugin.digest == self._signer.digest:
            return False
        self._signer = _signer(plugin.key, plugin.cert, plugin.chain_pem, plugin.bundle_pem, plugin.digest)
        return True

    @classmethod
    def load_or_create(
        cls, directory: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN
    ) -> CertificateAuthority:
        """The root kept in `directory` (created on first use, key file mode 0600), so a restarted control
        plane signs with the same root and the certificates proxies already hold stay valid."""
        if is_plugin_dir(directory):
            return cls.from_plugin_dir(directory, trust_domain)
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

    def issue(self, spiffe_ids: tuple[str, ...], ttl: timedelta) -> IssuedCert:
        """A fresh key pair and a leaf certificate carrying every SPIFFE id as a URI SAN."""
        if not spiffe_ids:
            raise ValueError("a workload certificate needs at least one SPIFFE id")
        key = ec.generate_private_key(ec.SECP256R1())
        signer = self._signer
        cert, serial, not_before, not_after = self._leaf(
            signer, key.public_key(), [x509.UniformResourceIdentifier(s) for s in spiffe_ids], ttl
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return IssuedCert(
            spiffe_ids=tuple(spiffe_ids),
            cert_pem=cert.public_bytes(serialization.Encoding.PEM) + signer.chain_pem,  # leaf first
            key_pem=key_pem,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
        )

    def sign_public_key(
        self, public_key: CertificatePublicKeyTypes, spiffe_ids: tuple[str, ...], ttl: timedelta
    ) -> list[bytes]:
        """The chain (PEMs: leaf, intermediates..., trust bundle last, as istiod's CreateCertificate answers)
        for a key the workload generated and keeps (its CSR's public key)."""
        if not spiffe_ids:
            raise ValueError("a workload certificate needs at least one SPIFFE id")
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(s) for s in spiffe_ids]
        signer = self._signer
        leaf = self._leaf(signer, public_key, sans, ttl)[0].public_bytes(serialization.Encoding.PEM)
        chain = [c.public_bytes(serialization.Encoding.PEM) for c in _pem_certs(signer.chain_pem)]
        return [leaf, *chain, signer.bundle_pem]

    def serving_certificate(
        self, dns_names: list[str], ips: list[str], ttl: timedelta
    ) -> tuple[bytes, bytes]:
        """(cert PEM, key PEM) of the control plane's own TLS servers (xDS, CA), verified against the root."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        signer = self._signer
        cert = self._leaf(signer, key.public_key(), sans, ttl)[0]
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM) + signer.chain_pem, key_pem

    @staticmethod
    def _leaf(
        signer: Signer, public_key: CertificatePublicKeyTypes, sans: list[x509.GeneralName], ttl: timedelta
    ) -> tuple[x509.Certificate, int, datetime, datetime]:
        if ttl <= timedelta(0):
            raise ValueError(f"certificate TTL must be positive, got {ttl}")
        now = datetime.now(UTC)
        not_before, not_after = now - CLOCK_SKEW, now + ttl
        serial = int.from_bytes(secrets.token_bytes(16), "big") >> 1  # positive, < 2^127
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(signer.cert.subject)
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
            .add_extension(signer.key_id, critical=False)
            .add_extension(
                x509.SubjectAlternativeName(sans),
                critical=True,  # empty subject: RFC 5280 requires the SAN to be critical
            )
            .sign(signer.key, hashes.SHA256())
        )
        return cert, serial, not_before, not_after


def _self_signed_root(key: ec.EllipticCurvePrivateKey, trust_domain: str) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
    public = key.public_key()
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
        .sign(key, hashes.SHA256())
    )


def _pem_certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


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
