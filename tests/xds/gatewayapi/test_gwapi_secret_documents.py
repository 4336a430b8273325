"""Gateway listener certificateRefs served from `kubernetes.io/tls` Secret documents of a watched config
folder (xds/sources/secrets.py): the certificate resolved with the version, the key read from the Secret's
file and served only while its SHA-256 is the stored one.

Attacker cases: a Secret carrying a key sent over the API is refused and nothing of it kept; the stored
documents and resolved inputs hold no key bytes; a Secret file readable by group or others is refused and
its key never read."""

from __future__ import annotations

import base64
from pathlib import Path

from xds.controlplane.inputs import InputResolver
from xds.controlplane.store.plan import InputRefresh
from xds.credential_files import CredentialStore
from xds.inputs import EMPTY_INPUTS
from xds.pipeline import compile_documents, load_text
from xds.sources.loader import load_paths
from xds.sources.secrets import REDACTED, TlsSecrets, guard_folder, refuse_keys
from xds.testing import certs

GATEWAY = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: mecha
  listeners:
  - name: www
    port: 443
    protocol: HTTPS
    hostname: www.example.com
    tls: {certificateRefs: [{name: www-cert}]}
"""


def _secret(
    folder: Path, name: str = "www-cert", namespace: str = "infra", mode: int = 0o600
) -> tuple[str, bytes]:
    """A TLS Secret document for www.example.com written to folder/<name>.yaml; (its text, the key PEM)."""
    work = folder.parent / f"{folder.name}-{name}-pem"
    cert, key = certs.self_signed(work, "www.example.com", ca=True)
    crt, pem = cert.read_bytes(), key.read_bytes()
    text = f"""apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
type: kubernetes.io/tls
data:
  tls.crt: {base64.b64encode(crt).decode()}
  tls.key: {base64.b64encode(pem).decode()}
"""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    path.chmod(mode)
    return text, pem


def _key_lines(pem: bytes) -> list[str]:
    return [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]


def test_secret_document_resolves_with_hash_only(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(GATEWAY)
    _text, key = _secret(folder)
    docs, diags = load_paths([folder])
    docs = guard_folder(docs, diags)
    assert not diags
    resolver = InputResolver(None, config_folders=(folder,))
    result = compile_documents(docs, inputs=resolver.resolving(EMPTY_INPUTS, InputRefresh()))
    assert result.config is not None, [str(d) for d in result.diagnostics]
    found = result.config.inputs.credential("www-cert")
    assert found is not None and found.secret == "infra/www-cert"
    stored = result.config.inputs.to_json() + "".join(d.source + repr(d.body) for d in docs)
    assert all(line not in stored for line in _key_lines(key))
    assert base64.b64encode(key).decode() not in stored
    # served while the file's key is the stored one; a swapped key is refused
    store = CredentialStore(None, stored=True, secrets=TlsSecrets((folder,)))
    assert store.load({"www-cert"}, result.config.inputs)
    _secret(folder)  # a new key in the same file
    assert not store.load({"www-cert"}, result.config.inputs)
    assert "not the key" in store.describe("www-cert")


def test_secret_of_another_namespace_is_not_the_gateways_name(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(GATEWAY)
    _secret(folder, namespace="other")  # Gateway infra/edge names www-cert: infra's, not other's
    docs, diags = load_paths([folder])
    resolver = InputResolver(None, config_folders=(folder,))
    result = compile_documents(
        guard_folder(docs, diags), inputs=resolver.resolving(EMPTY_INPUTS, InputRefresh())
    )
    assert result.config is not None
    assert result.config.inputs.credential("www-cert") is None


def test_api_secret_with_key_refused(tmp_path: Path) -> None:
    text, _key = _secret(tmp_path)
    docs, diags = load_text(GATEWAY + "---\n" + text, "request.yaml")
    kept = refuse_keys(docs, diags)
    assert [d.kind for d in kept] == ["Gateway"]
    assert len(diags) == 1 and diags[0].severity == "error"
    message = str(diags[0])
    assert "request.yaml" in message and "infra/www-cert" in message and "credentials folder" in message


def test_api_secret_without_key_kept_redacted() -> None:
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2}\n"
    docs, diags = load_text(text, "request.yaml")
    kept = refuse_keys(docs, diags)
    assert not diags and kept[0].body["stringData"] == {"password": REDACTED}
    assert "hunter2" not in kept[0].source


def test_world_readable_secret_refused(tmp_path: Path) -> None:
    _secret(tmp_path, mode=0o644)
    docs, diags = load_paths([tmp_path])
    guard_folder(docs, diags)
    assert len(diags) == 1 and diags[0].severity == "error"
    assert str(tmp_path / "www-cert.yaml") in str(diags[0]) and "0644" in str(diags[0])
    assert TlsSecrets((tmp_path,)).get("infra/www-cert") is None  # its key is never read
