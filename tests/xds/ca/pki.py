"""An organisation's PKI made the way Istio's tools/certs do it: a root, intermediates per cluster, and the
`cacerts` files (ca-cert.pem, ca-key.pem, cert-chain.pem = ca-cert + root, root-cert.pem) for one of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class Ca:
    key: Key
    cert: x509.Certificate
    parent: Ca | None = None

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def chain(self) -> list[Ca]:
        """Self, then each issuer up to the root."""
        return [self, *(self.parent.chain() if self.parent else [])]


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not ca, data_encipherment=False,
        key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def make_ca(name: str, parent: Ca | None = None, rsa_key: bool = False, is_ca: bool = True) -> Ca:
    key: Key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])  # fmt: skip
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(_key_usage(is_ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if parent is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False
        )
    cert = builder.sign(parent.key if parent else key, hashes.SHA256())
    return Ca(key, cert, parent)


def istio_leaf(ca: Ca, spiffe: str) -> tuple[Key, list[x509.Certificate]]:
    """A workload certificate as istiod signs it with its own cacerts: (key, [leaf, ca-cert, ...])."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=24))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return key, [leaf, *(c.cert for c in ca.chain()[:-1])]


def write_cacerts(folder: Path, ca: Ca, roots: list[Ca] | None = None) -> Path:
    """Istio's cacerts layout for intermediate `ca`; root-cert.pem holds `roots` (default: its own root)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    bundle = roots if roots is not None else [ca.chain()[-1]]
    files = {
        "ca-cert.pem": ca.pem,
        "ca-key.pem": ca.key_pem(),
        "cert-chain.pem": b"".join(c.pem for c in ca.chain()),  # tools/certs: ca-cert.pem + root-cert.pem
        "root-cert.pem": b"".join(r.pem for r in bundle),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "ca-key.pem").chmod(0o600)
    return folder
