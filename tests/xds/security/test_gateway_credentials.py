"""Gateway `tls.credentialName`: SDS secrets `kubernetes://<name>` (+ `-cacert`) read from a folder."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import compile_text, decoded
from test_sec_gaps import GATEWAY_PROXY, _gateway_text

from xds import types
from xds.cache.snapshot import Snapshot
from xds.credential_files import CredentialStore
from xds.diagnostics import Severity
from xds.pipeline import SnapshotBuilder

SERVERS = (
    "[{port: {number: 443, protocol: HTTPS, name: https}, hosts: [a.test],"
    " tls: {mode: MUTUAL, credentialName: good}},"
    " {port: {number: 8443, protocol: HTTPS, name: https-b}, hosts: [b.test],"
    " tls: {mode: SIMPLE, credentialName: absent}}]"
)


def _credential(folder: Path, name: str, cert: bytes, ca: bytes | None = None) -> None:
    where = folder / name
    where.mkdir(parents=True, exist_ok=True)
    (where / "tls.crt").write_bytes(cert)
    (where / "tls.key").write_bytes(b"KEY-" + cert)
    if ca is not None:
        (where / "ca.crt").write_bytes(ca)


def _build(builder: SnapshotBuilder) -> Snapshot:
    result = compile_text(_gateway_text(SERVERS, ""), "gw.yaml")
    assert result.ok and result.config is not None, [str(d) for d in result.errors]
    return builder.build(result.config, [GATEWAY_PROXY])["gw"]


def test_credential_becomes_sds_secrets_and_missing_one_is_an_error(tmp_path: Path) -> None:
    _credential(tmp_path, "good", b"CERT-1", b"CA-1")
    builder = SnapshotBuilder(credentials=CredentialStore(tmp_path))
    snap = _build(builder)
    secrets = snap.of(types.SECRET)
    assert sorted(secrets) == ["kubernetes://good", "kubernetes://good-cacert"]
    chain = decoded(snap, "LDS")["0.0.0.0_443"]["filterChains"][0]
    chain_tls = chain["transportSocket"]["typedConfig"]
    common = chain_tls["commonTlsContext"]
    assert [c["name"] for c in common["tlsCertificateSdsSecretConfigs"]] == ["kubernetes://good"]
    assert common["validationContextSdsSecretConfig"]["name"] == "kubernetes://good-cacert"
    assert chain_tls["requireClientCertificate"] is True
    # the server with a missing credential is skipped, with an error naming file and field
    assert "0.0.0.0_8443" not in decoded(snap, "LDS")
    errors = [w for w in builder.warnings if w.severity == Severity.ERROR]
    assert [(e.location.file, e.field) for e in errors] == [("gw.yaml", "spec.servers[1].tls.credentialName")]
    assert "absent" in errors[0].message and str(tmp_path / "absent") in errors[0].message


def test_changed_credential_files_give_a_new_secret(tmp_path: Path) -> None:
    _credential(tmp_path, "good", b"CERT-1", b"CA-1")
    builder = SnapshotBuilder(credentials=CredentialStore(tmp_path))
    first = _build(builder).of(types.SECRET)
    _credential(tmp_path, "good", b"CERT-2-longer", b"CA-1")
    stat = (tmp_path / "good" / "tls.crt").stat()
    os.utime(tmp_path / "good" / "tls.crt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = _build(builder).of(types.SECRET)
    assert first["kubernetes://good"].version != second["kubernetes://good"].version
    assert first["kubernetes://good-cacert"].version == second["kubernetes://good-cacert"].version


def test_no_credentials_folder_says_how_to_configure_one() -> None:
    builder = SnapshotBuilder()
    _build(builder)
    errors = [w for w in builder.warnings if w.severity == Severity.ERROR]
    assert len(errors) == 2 and all("MECHA_CREDENTIALS_DIR" in e.message for e in errors)
