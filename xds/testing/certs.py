"""Self-signed certificates for tests (the e2e and Gateway API suites serve and trust them)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(
    folder: Path,
    host: str,
    *,
    names: tuple[str, str] = ("tls.crt", "tls.key"),
    ip: str | None = None,
    ca: bool = False,
    valid: timedelta = timedelta(days=1),
) -> tuple[Path, Path]:
    """An EC P-256 certificate for `host` (and `ip`), written as PEM into folder (created if missing); (cert
    path, key path). ca=True marks it a CA too, so a client can trust it directly as its own root."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(host)]
    if ip is not None:
        alt.append(x509.IPAddress(ipaddress.ip_address(ip)))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + valid)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = folder / names[0], folder / names[1]
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
