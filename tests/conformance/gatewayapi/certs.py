"""The certificate Secrets the Go suite generates at start-up (conformance/utils/kubernetes/certificate.go
MustCreateSelfSignedCertSecret: RSA 2048, self-signed, server auth, the hosts as DNS SANs), written as Mecha
reads Secrets: credential files (docs/gateway-api.md, "HTTPS, TLS and TCP listeners"). A Secret NAME of
namespace NS is the folder CREDENTIALS/NS/NAME/, and, for the infrastructure namespace where every Gateway of
the suite lives, also CREDENTIALS/NAME/ (a Gateway's same-namespace Secret)."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=365)  # certificate.go validFor


def self_signed(hosts: list[str]) -> tuple[bytes, bytes]:
    """MustCreateSelfSignedCertSecret: (certificate PEM, PKCS#1 key PEM)."""
    return _leaf(hosts, None)


def ca_signed(hosts: list[str], ca: CA) -> tuple[bytes, bytes]:
    """MustCreateCASignedCertSecret: a server certificate for hosts issued by ca."""
    return _leaf(hosts, ca)


@dataclass(frozen=True)
class CA:
    """generateCACert / MustCreateCACertConfigMap: the CA a ConfigMap's ca.crt holds."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def new_ca() -> CA:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kubernetes Gateway API"),
            x509.NameAttribute(NameOID.COMMON_NAME, "gatewayapi"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)  # self-signed: Go signs the template with itself as the parent
        .public_key(key.public_key())
        .serial_number(2024)
        .not_valid_before(now)
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return CA(cert, key)


def _key_usage(cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=not cert_sign,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf(hosts: list[str], ca: CA | None) -> tuple[bytes, bytes]:
    """generateRSACert: RSA 2048, server auth, the hosts as IP, DNS or URI SANs; self-signed without a CA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "default"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
        ]
    )
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.UniformResourceIdentifier(h) if "://" in h else x509.DNSName(h))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.cert.subject if ca else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca.key if ca else key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class Credentials:
    """The credential folder `mecha serve` reads Secrets from (MECHA_CREDENTIALS_DIR)."""

    def __init__(self, root: Path, home_namespace: str) -> None:
        self.root = root
        self.home = home_namespace
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        root.mkdir(parents=True, exist_ok=True)

    def _folders(self, namespace: str, name: str) -> list[Path]:
        folders = [self.root / namespace / name]
        if namespace == self.home:
            folders.append(self.root / name)
        return folders

    def write(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        self.secrets[(namespace, name)] = data
        for folder in self._folders(namespace, name):
            folder.mkdir(parents=True, exist_ok=True)
            for key, value in data.items():
                (folder / key).write_bytes(value)

    def remove(self, namespace: str, name: str) -> None:
        self.secrets.pop((namespace, name), None)
        for folder in self._folders(namespace, name):
            shutil.rmtree(folder, ignore_errors=True)
