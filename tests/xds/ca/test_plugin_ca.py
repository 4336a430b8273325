"""Istio's plug-in CA (`cacerts`): Mecha signs as an intermediate under the organisation's root, so Istio's
and Mecha's workloads verify each other; inconsistent files are refused naming the file; a rotated bundle is
re-read without a restart."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from pki import istio_leaf, make_ca, write_cacerts

from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.ca.messages import CertificateRequest
from xds.ca.service import CertificateService

SPIFFE_ISTIO = "spiffe://cluster.local/ns/bookinfo/sa/reviews"
SPIFFE_MECHA = "spiffe://cluster.local/ns/default/sa/productpage"


def verify_client(roots: list[x509.Certificate], chain: list[x509.Certificate]) -> list[str]:
    """The peer's URI SANs once its chain verifies against `roots` (what an mTLS server checks)."""
    verifier = PolicyBuilder().store(Store(roots)).build_client_verifier()
    verified = verifier.verify(chain[0], chain[1:])
    return [str(n.value) for n in verified.subjects or [] if isinstance(n, x509.UniformResourceIdentifier)]


def mecha_chain(ca: CertificateAuthority, spiffe: str) -> tuple[list[x509.Certificate], bytes]:
    """What the CSR endpoint answers for a workload's own key: (leaf + intermediates, trust bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pems = ca.sign_public_key(key.public_key(), (spiffe,), timedelta(hours=1))
    certs = [x509.load_pem_x509_certificate(p) for p in pems[:-1]]
    return certs, pems[-1]


def test_istio_and_mecha_intermediates_under_one_root_verify_each_other(tmp_path: Path) -> None:
    org_root = make_ca("org root", rsa_key=True)
    istio_intermediate = make_ca("istio cluster-1", org_root, rsa_key=True)
    mecha_intermediate = make_ca("mecha", org_root)
    ca = CertificateAuthority.load_or_create(write_cacerts(tmp_path / "cacerts", mecha_intermediate))
    assert ca.plugin_dir == tmp_path / "cacerts" and ca.root == mecha_intermediate.cert
    assert ca.root_pem == org_root.pem  # ROOTCA / the agents' root file: the organisation's root

    mecha, bundle = mecha_chain(ca, SPIFFE_MECHA)
    assert mecha[1] == mecha_intermediate.cert and len(mecha) == 2  # the org root is not sent
    assert x509.load_pem_x509_certificates(bundle) == [org_root.cert]
    _, istio = istio_leaf(istio_intermediate, SPIFFE_ISTIO)
    # each side trusts only the org root it got as ROOTCA, and the peer's chain carries its intermediate
    assert verify_client([org_root.cert], istio) == [SPIFFE_ISTIO]
    assert verify_client(x509.load_pem_x509_certificates(bundle), mecha) == [SPIFFE_MECHA]
    # in-memory SDS (no agents): the `default` chain carries the intermediate too
    issued = ca.issue((SPIFFE_MECHA,), timedelta(hours=1))
    assert verify_client([org_root.cert], x509.load_pem_x509_certificates(issued.cert_pem)) == [SPIFFE_MECHA]
    # the xDS port's certificate chains to the org root as well (what agents verify)
    cert_pem, _ = ca.serving_certificate(["mecha-controlplane"], ["127.0.0.1"], timedelta(hours=1))
    serving = x509.load_pem_x509_certificates(cert_pem)
    server = PolicyBuilder().store(Store([org_root.cert]))
    server.build_server_verifier(x509.DNSName("mecha-controlplane")).verify(serving[0], serving[1:])
    # another organisation's root is not trusted
    with pytest.raises(VerificationError):
        verify_client([make_ca("other org").cert], mecha)


def test_a_deeper_chain_is_followed_to_the_root(tmp_path: Path) -> None:
    org_root = make_ca("org root")
    region = make_ca("region", org_root)
    mecha_intermediate = make_ca("mecha", region)
    ca = CertificateAuthority.load_or_create(write_cacerts(tmp_path, mecha_intermediate))
    chain, _ = mecha_chain(ca, SPIFFE_MECHA)
    assert chain[1:] == [mecha_intermediate.cert, region.cert]
    assert verify_client([org_root.cert], chain) == [SPIFFE_MECHA]


def test_the_csr_answer_is_leaf_intermediates_then_the_whole_bundle(tmp_path: Path) -> None:
    old_root, new_root = make_ca("root 2024"), make_ca("root 2025")
    ca = CertificateAuthority.load_or_create(write_cacerts(tmp_path, make_ca("mecha", old_root),
                                                           roots=[new_root, old_root]))  # fmt: skip

    class Cred:
        jti, proxy_id, expires_at = "j", "p", 1e12

        def spiffe_ids(self, _td: str) -> tuple[str, ...]:
            return (SPIFFE_MECHA,)

    class Auth:
        def credential(self, _metadata: dict[str, str]) -> Cred:
            return Cred()

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SPIFFE_MECHA)]), True)
           .sign(key, hashes.SHA256()))  # fmt: skip
    service = CertificateService(ca, Auth(), timedelta(hours=1))  # type: ignore[arg-type]
    answer = service.sign(CertificateRequest(csr=csr.public_bytes(serialization.Encoding.PEM).decode()), {})
    chain = list(answer.cert_chain)
    assert len(chain) == 3
    assert x509.load_pem_x509_certificates(chain[-1].encode()) == [new_root.cert, old_root.cert]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("wrong-key", r"ca-key\.pem does not match ca-cert\.pem"),
        (
            "other-root",
            r"cert-chain\.pem: the chain from ca-cert\.pem .* does not lead to a root of root-cert",
        ),
        ("not-ca", r"ca-cert\.pem: not a CA certificate \(basicConstraints CA:TRUE missing\)"),
        ("no-root", r"root-cert\.pem is missing"),
        ("garbage-key", r"ca-key\.pem: not an unencrypted PEM private key"),
    ],
)
def test_inconsistent_files_are_refused_naming_the_file(tmp_path: Path, breakage: str, message: str) -> None:
    org_root = make_ca("org root")
    folder = write_cacerts(tmp_path / "cacerts", make_ca("mecha", org_root, is_ca=breakage != "not-ca"))
    if breakage == "wrong-key":
        (folder / "ca-key.pem").write_bytes(make_ca("stray").key_pem())
    elif breakage == "other-root":
        (folder / "root-cert.pem").write_bytes(make_ca("someone else's root").pem)
    elif breakage == "no-root":
        (folder / "root-cert.pem").unlink()
    elif breakage == "garbage-key":
        (folder / "ca-key.pem").write_text("not a key")
    with pytest.raises(ValueError, match=message) as refused:
        CertificateAuthority.load_or_create(folder)
    assert str(folder) in str(refused.value)


def test_rotated_files_are_reread_and_bad_ones_keep_the_current_signer(tmp_path: Path) -> None:
    old_root, new_root = make_ca("root 2024"), make_ca("root 2025")
    folder = write_cacerts(tmp_path, make_ca("mecha old", old_root))
    ca = CertificateAuthority.load_or_create(folder)
    certs = WorkloadCertificates(ca, ttl=timedelta(hours=1))
    assert ca.reload() is False  # unchanged files: nothing to do
    old_rootca = certs.root

    write_cacerts(folder, make_ca("mecha new", new_root), roots=[new_root, old_root])
    assert ca.reload() is True
    chain, bundle = mecha_chain(ca, SPIFFE_MECHA)
    both = [new_root.cert, old_root.cert]
    assert x509.load_pem_x509_certificates(bundle) == both
    assert verify_client(both, chain) == [SPIFFE_MECHA]
    with pytest.raises(VerificationError):
        verify_client([old_root.cert], chain)  # signed under the new root now
    assert certs.root is not old_rootca and certs.root.body != old_rootca.body  # ROOTCA carries both roots

    (folder / "ca-key.pem").write_bytes(make_ca("stray").key_pem())  # a half-copied rotation
    with pytest.raises(ValueError, match=r"ca-key\.pem does not match"):
        ca.reload()
    assert verify_client(both, mecha_chain(ca, SPIFFE_MECHA)[0]) == [SPIFFE_MECHA]  # still signing


def test_a_folder_without_cacerts_keeps_mechas_own_root(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert ca.plugin_dir is None and ca.chain_pem == b"" and ca.reload() is False
    assert (tmp_path / "ca" / "root-cert.pem").read_bytes() == ca.root_pem
    chain, _ = mecha_chain(ca, SPIFFE_MECHA)
    assert len(chain) == 1 and verify_client([ca.root], chain) == [SPIFFE_MECHA]
