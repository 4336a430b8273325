"""The workload key and its certificate: generated here, signed by the control plane's CA, rotated at half
its lifetime. The private key exists only in this process (and, for proxyless gRPC, in a 0600 file)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from xds.agent.channel import CredentialSource
from xds.ca.messages import FULL_METHOD, CertificateRequest, CertificateResponse
from xds.identity.credential import read_unverified
from xds.statedir import ensure_private_dir, write_private_file

log = logging.getLogger(__name__)
ROTATE_AT = 0.5  # like istio-agent's SECRET_GRACE_PERIOD_RATIO
# at most one CSR a second, whatever the clocks say (an agent clock ahead of the CA's sees every new
# certificate past its rotation point and would ask again at once, pushing a new secret to Envoy each time);
# also the pace of retries while the CA does not answer
MIN_ROTATION_S = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WorkloadCert:
    key_pem: bytes
    chain_pem: bytes  # leaf first
    root_pem: bytes
    not_before: datetime  # backdated by the CA for clock skew (a minute: more than a short TTL)
    not_after: datetime
    issued_at: datetime = field(default_factory=_now)  # the agent's clock when it asked for it

    def rotate_after(self) -> datetime:
        """Half the lifetime left at issue, as istio-agent counts from its CreatedTime: counted from the
        backdated not_before, a certificate shorter than the backdate is due the moment it arrives."""
        return self.issued_at + (self.not_after - self.issued_at) * ROTATE_AT


def make_csr(trust_domain: str, token: str) -> tuple[bytes, bytes]:
    """(key PEM, CSR PEM) asking for the SPIFFE ids the credential names."""
    cred = read_unverified(token)
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.UniformResourceIdentifier(s) for s in cred.spiffe_ids(trust_domain)]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


class CertificateError(RuntimeError):
    """The CA refused (or could not be reached); the message carries its status and reason."""


class CertificateClient:
    def __init__(
        self, channel: grpc.aio.Channel, credential: CredentialSource, trust_domain: str, ttl_s: float = 0
    ) -> None:
        self.credential = credential
        self.trust_domain = trust_domain
        self.ttl_s = ttl_s
        self._call = channel.unary_unary(
            FULL_METHOD,
            request_serializer=CertificateRequest.SerializeToString,
            response_deserializer=CertificateResponse.FromString,
        )

    async def fetch(self) -> WorkloadCert:
        token = self.credential.token()
        asked = _now()
        key_pem, csr_pem = make_csr(self.trust_domain, token)
        request = CertificateRequest(csr=csr_pem.decode(), validity_duration=int(self.ttl_s))
        try:
            response = await self._call(request, metadata=self.credential.metadata(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            raise CertificateError(f"CreateCertificate: {exc.code().name}: {exc.details()}") from None
        chain = list(response.cert_chain)
        if len(chain) < 2:
            raise CertificateError("CreateCertificate: the answer has no root certificate")
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
        return WorkloadCert(
            key_pem=key_pem,
            chain_pem="".join(chain[:-1]).encode(),
            root_pem=chain[-1].encode(),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            issued_at=asked,
        )


CERT_FILES = ("key.pem", "cert-chain.pem", "root-cert.pem")
DATA_LINK = "..data"


def write_cert_files(folder: Path, cert: WorkloadCert) -> None:
    """What gRPC's file_watcher certificate provider reads (proxyless gRPC): chain, key (0600), root.

    Key and chain change together, as a Kubernetes secret volume does: the three files go into a new
    0700 folder, `..data` is switched to it with one rename, and key.pem etc. are links through `..data`,
    so a reader never sees the new key with the old certificate. The generation `..data` leaves stays until
    the next switch: a reader that resolved the link just before this one can still read all its files.
    At most two generations exist at any time (older ones are removed before the new one is written)."""
    ensure_private_dir(folder)
    data = folder / DATA_LINK
    current = data.resolve() if data.is_symlink() else None
    for old in folder.glob("..2*"):  # generation folders (`..<UTC timestamp>`), not `..data`
        if old.is_dir() and not old.is_symlink() and old.resolve() != current:
            shutil.rmtree(old, ignore_errors=True)
    version = folder / f"..{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%f')}"
    for name, content in zip(CERT_FILES, (cert.key_pem, cert.chain_pem, cert.root_pem), strict=True):
        write_private_file(version / name, content)
    link = folder / f"{DATA_LINK}.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    os.replace(link, data)  # the switch: atomic
    for name in CERT_FILES:
        if not (folder / name).is_symlink():  # first write (or plain files of an older agent)
            (folder / name).unlink(missing_ok=True)
            (folder / name).symlink_to(Path(DATA_LINK) / name)


async def rotate_forever(
    client: CertificateClient,
    current: WorkloadCert,
    publish: Callable[[WorkloadCert], Awaitable[None]],
    clock: Callable[[], datetime] = _now,
) -> None:
    """Replace the certificate at half its lifetime; retry each second while the CA does not answer (the
    old certificate keeps serving until it expires)."""
    while True:
        wait = (current.rotate_after() - clock()).total_seconds()
        await asyncio.sleep(max(wait, MIN_ROTATION_S))
        try:
            fresh = await client.fetch()
            await publish(fresh)
        except CertificateError as exc:
            log.warning("certificate rotation failed (retrying): %s", exc)
            continue
        except Exception:  # anything else (a full disk for cert files...): keep rotating, say why
            log.exception("certificate rotation failed (retrying)")
            continue
        current = fresh
        log.info("certificate rotated; valid until %s", current.not_after.isoformat())
