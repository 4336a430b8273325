"""Istio's plug-in CA files (the `cacerts` secret): Mecha signs as an intermediate under the org's root.

ca-cert.pem / ca-key.pem: the intermediate that signs workload certificates; cert-chain.pem: its chain
(istio's tools/certs write ca-cert.pem + root-cert.pem into it), appended to every workload certificate;
root-cert.pem: the trust bundle (one root, or several while a root rotates), served as ROOTCA. The files are
checked as istiod checks them: a mismatch names the file and the reason, not a later TLS handshake.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CA_CERT_FILE = "ca-cert.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_CHAIN_FILE = "cert-chain.pem"
ROOT_CERT_FILE = "root-cert.pem"
PLUGIN_FILES = (CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE)
MAX_CHAIN = 8  # longer chains are a loop or a mistake

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class PluginCa:
    """What the files hold, checked: the signing pair, the chain appended to leaves, the trust bundle."""

    key: SigningKey
    cert: x509.Certificate
    chain_pem: bytes  # intermediates after a leaf: ca-cert.pem first, never a root of the bundle
    roots: tuple[x509.Certificate, ...]
    bundle_pem: bytes  # root-cert.pem as given (several roots during a rotation)
    digest: str  # of the four files' bytes: tells a watcher the files changed


def is_plugin_dir(directory: Path) -> bool:
    """istiod's rule: a mounted cacerts (ca-cert.pem present) replaces the self-signed root."""
    return (directory / CA_CERT_FILE).exists()


def _read(directory: Path, name: str, required: bool = True) -> bytes:
    try:
        return (directory / name).read_bytes()
    except FileNotFoundError:
        if required:
            raise ValueError(f"CA directory {directory}: {name} is missing (Istio's cacerts layout: "
                             f"{', '.join(PLUGIN_FILES)})") from None  # fmt: skip
        return b""
    except OSError as exc:
        raise ValueError(f"CA directory {directory}: cannot read {name}: {exc.strerror}") from None


def _certs(directory: Path, name: str, data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data) if data.strip() else []
    except ValueError as exc:
        raise ValueError(f"CA directory {directory}: {name}: not PEM certificates ({exc})") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def load_plugin_ca(directory: Path) -> PluginCa:
    """The checked files; ValueError naming the file and what is wrong with it."""
    raw = {name: _read(directory, name, required=name != CERT_CHAIN_FILE) for name in PLUGIN_FILES}
    where = f"CA directory {directory}"
    ca_certs = _certs(directory, CA_CERT_FILE, raw[CA_CERT_FILE])
    if len(ca_certs) != 1:
        raise ValueError(f"{where}: {CA_CERT_FILE}: expected one certificate, found {len(ca_certs)}")
    cert = ca_certs[0]
    if not _is_ca(cert):
        raise ValueError(f"{where}: {CA_CERT_FILE}: not a CA certificate (basicConstraints CA:TRUE missing)")
    try:
        key = serialization.load_pem_private_key(raw[CA_KEY_FILE], password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {CA_KEY_FILE}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{where}: {CA_KEY_FILE}: expected an EC or RSA key, got {type(key).__name__}")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError(f"{where}: {CA_KEY_FILE} does not match {CA_CERT_FILE} (different public keys)")
    roots = _certs(directory, ROOT_CERT_FILE, raw[ROOT_CERT_FILE])
    if not roots:
        raise ValueError(f"{where}: {ROOT_CERT_FILE}: no certificate in it")
    for root in roots:
        if not _is_ca(root):
            raise ValueError(f"{where}: {ROOT_CERT_FILE}: {root.subject.rfc4514_string()} is not a CA "
                             "certificate (basicConstraints CA:TRUE missing)")  # fmt: skip
    chain = _certs(directory, CERT_CHAIN_FILE, raw[CERT_CHAIN_FILE])
    intermediates = _chain_to_root(directory, cert, chain, roots)
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in intermediates)
    digest = hashlib.sha256(b"\0".join(raw[name] for name in PLUGIN_FILES)).hexdigest()
    return PluginCa(key, cert, chain_pem, tuple(roots), raw[ROOT_CERT_FILE], digest)


def chains_to(chain_pem: bytes, bundle_pem: bytes) -> bool:
    """Whether a served chain (leaf first, then intermediates) still leads to a root of the bundle."""
    certs, roots = x509.load_pem_x509_certificates(chain_pem), x509.load_pem_x509_certificates(bundle_pem)
    current = certs[0]
    for _ in range(MAX_CHAIN):
        if any(_signed_by(current, root) for root in roots):
            return True
        issuer = next((c for c in certs[1:] if _signed_by(current, c)), None)
        if issuer is None or issuer == current:
            return False
        current = issuer
    return False


def _chain_to_root(
    directory: Path, cert: x509.Certificate, chain: list[x509.Certificate], roots: list[x509.Certificate]
) -> list[x509.Certificate]:
    """ca-cert.pem and the intermediates that lead from it to a root of root-cert.pem (roots left out)."""
    if cert in roots:  # the signing cert is itself a root of the bundle: leaves need no intermediate
        return []
    path = [cert]
    current = cert
    for _ in range(MAX_CHAIN):
        if any(_signed_by(current, root) for root in roots):
            return path
        issuer = next((c for c in chain if c not in path and _signed_by(current, c)), None)
        if issuer is None:
            break
        if not _is_ca(issuer):
            name = issuer.subject.rfc4514_string()
            raise ValueError(f"CA directory {directory}: {CERT_CHAIN_FILE}: {name} is not a CA certificate "
                             "(basicConstraints CA:TRUE missing)")  # fmt: skip
        path.append(issuer)
        current = issuer
    raise ValueError(
        f"CA directory {directory}: {CERT_CHAIN_FILE}: the chain from {CA_CERT_FILE} "
        f"({cert.subject.rfc4514_string()}) does not lead to a root of {ROOT_CERT_FILE} "
        f"(stops at {current.subject.rfc4514_string()}, issued by {current.issuer.rfc4514_string()})"
    )
