"""`mecha agent --cert-dir`: the files gRPC's xDS file_watcher certificate provider reads (proxyless gRPC),
written 0600, the key matching the certificate, and replaced on every rotation."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent_helpers import distinct_serials, served_control_plane
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from xds.agent.certs import WorkloadCert, write_cert_files


def read_pair_as_grpc_does(folder: Path, attempts: int = 3) -> tuple[bytes, bytes]:
    """(key.pem, cert-chain.pem) read as gRPC's file_watcher provider reads them: through the links in the
    folder, with the files' identity taken before and after, retried when a switch happened in between
    (gRPC compares modification times; here inode + mtime in ns, stricter). A missing file fails."""

    names = ("key.pem", "cert-chain.pem")

    def stamps() -> list[tuple[int, int]]:
        return [(st.st_ino, st.st_mtime_ns) for st in ((folder / n).stat() for n in names)]

    for _ in range(attempts):
        before = stamps()
        key_pem, chain_pem = ((folder / n).read_bytes() for n in names)
        if stamps() == before:
            return key_pem, chain_pem
    raise AssertionError(f"the files changed during each of {attempts} reads")


def _cert(serial: int) -> WorkloadCert:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(serial).not_valid_before(now).not_valid_after(now + timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain_pem = leaf.public_bytes(serialization.Encoding.PEM)
    return WorkloadCert(key_pem, chain_pem, chain_pem, now, now + timedelta(hours=1))


def test_a_reader_that_resolved_the_link_before_a_switch_still_reads_its_generation(tmp_path: Path) -> None:
    """A reader holding the generation `..data` named before a switch (it resolved the link, then the agent
    rotated) reads both its files; that generation goes at the switch after, and two at most exist."""
    certs = tmp_path / "certs"
    first = _cert(1)
    write_cert_files(certs, first)
    held = (certs / "..data").resolve()  # a reader resolves the link ...
    write_cert_files(certs, _cert(2))  # ... the agent rotates ...
    assert serial_of(held / "cert-chain.pem") == 1  # ... and the reader reads the files it resolved
    assert (held / "key.pem").read_bytes() == first.key_pem
    assert serial_of(certs / "cert-chain.pem") == 2
    assert len(list(certs.glob("..2*"))) == 2
    write_cert_files(certs, _cert(3))
    assert not held.exists(), "the generation before the previous one is removed"
    assert serial_of(certs / "cert-chain.pem") == 3
    assert len(list(certs.glob("..2*"))) == 2


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


async def test_standalone_agent_writes_and_rotates_the_certificate_files(tmp_path: Path) -> None:
    async with served_control_plane(tmp_path / "cp", {"MECHA_CERT_TTL": "2"}) as cp:
        certs = tmp_path / "certs"
        argv = ["-m", "xds.cli", "agent", "--credential", str(cp.credential()), "--control-plane", cp.xds,
                "--root-cert", str(cp.root), "--socket-dir", str(tmp_path / "sockets"),
                "--cert-dir", str(certs)]  # fmt: skip
        with (tmp_path / "agent.log").open("wb") as log:
            agent = await asyncio.create_subprocess_exec(sys.executable, *argv, stdout=log, stderr=log,
                                                         env={**os.environ})  # fmt: skip
        try:
            spki = serialization.PublicFormat.SubjectPublicKeyInfo
            pem = serialization.Encoding.PEM
            serials = await distinct_serials(certs, 6)
            assert len(serials) >= 4, (tmp_path / "agent.log").read_text()[-2000:]
            for name in ("key.pem", "cert-chain.pem", "root-cert.pem"):
                assert (certs / name).stat().st_mode & 0o777 == 0o600, name
            assert certs.stat().st_mode & 0o077 == 0
            # key and chain switch together (one rename of ..data): a pair read at any time matches
            for _ in range(40):
                key_pem, chain_pem = read_pair_as_grpc_does(certs)
                leaf = x509.load_pem_x509_certificate(chain_pem)
                key = serialization.load_pem_private_key(key_pem, None)
                assert leaf.public_key().public_bytes(pem, spki) == key.public_key().public_bytes(pem, spki)
                await asyncio.sleep(0.05)
            leaf = x509.load_pem_x509_certificate((certs / "cert-chain.pem").read_bytes())
            assert len(list(certs.glob("..2*"))) <= 2, "old certificate folders are removed"
            root = x509.load_pem_x509_certificate((certs / "root-cert.pem").read_bytes())
            assert root.subject == leaf.issuer
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
                "spiffe://cluster.local/ns/default/sa/reviews"
            ]
        finally:
            agent.terminate()
            await agent.wait()
