"""Gateway `tls.credentialName` files, read before translation (the translator reads no file).

`<folder>/<name>/tls.crt` + `tls.key` (+ optional `ca.crt`) become the credential's SDS secrets
(xds/translate/security/credentials.py). Files are re-read only when their (mtime, size) changes, so an
unchanged credential keeps the very same Resource objects.

The control plane resolves credentials with the config version (`resolve_credentials`, stored in the config
store: xds/model/inputs.py) and builds from that copy (`CredentialStore(folder, stored=True)`): tls.crt and
ca.crt come from the store, tls.key from the mounted file, served only while its SHA-256 is the stored one.

A credential with no folder may come from a `kubernetes.io/tls` Secret document of a watched config folder
(xds/sources/secrets.py): the same rule, the key read from that document's file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from xds.inputs import CredentialInput, ResolvedInputs
from xds.sources.secrets import TlsSecrets
from xds.translate.security.credentials import Credential, make_credential

CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _build(name: str, folder: Path) -> Credential:
    ca_path = folder / CA_FILE
    ca = ca_path.read_bytes() if ca_path.is_file() else None
    return make_credential(name, (folder / CERT_FILE).read_bytes(), (folder / KEY_FILE).read_bytes(), ca)


def _safe(name: str) -> bool:
    """NAME, or NS/NAME (a Gateway API certificateRef to a Secret of another namespace): never a path out of
    the folder."""
    parts = name.split("/")
    return len(parts) <= 2 and all(p and p not in (".", "..") and "\\" not in p for p in parts)


def key_digest(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


def secret_ref(name: str, namespaces: dict[str, set[str]]) -> str | None:
    """The Secret document NS/NAME a credential name stands for: NS/NAME itself, or NAME named by Gateways
    of one namespace NS only (a Secret of the Gateway's own namespace, never another's)."""
    if "/" in name:
        return name
    found = namespaces.get(name, set())
    return f"{next(iter(found))}/{name}" if len(found) == 1 else None


def _from_secret(name: str, ref: str, secrets: TlsSecrets) -> CredentialInput | None:
    found = secrets.get(ref)
    if found is None:
        return None
    try:
        cert, ca = found.cert.decode(), found.ca.decode()
    except UnicodeDecodeError:
        return None
    return CredentialInput(name, cert, key_digest(found.key), ca, secret=ref)


def resolve_credentials(
    folder: Path | None,
    names: set[str],
    secrets: TlsSecrets | None = None,
    namespaces: dict[str, set[str]] | None = None,
) -> list[CredentialInput]:
    """What a config version stores of each credential it names: tls.crt, ca.crt, and tls.key's hash only
    (the key stays a file every replica mounts). Missing/unreadable ones are left out: not served.
    The credentials folder first (as before); else a TLS Secret document (namespaces: credential name ->
    namespaces of the Gateways naming it)."""
    out: list[CredentialInput] = []
    for name in sorted(names):
        if not _safe(name):
            continue
        where = folder / name if folder is not None else None
        try:
            if where is None or not (where / KEY_FILE).is_file():
                raise FileNotFoundError(name)
            cert = (where / CERT_FILE).read_text()
            key = (where / KEY_FILE).read_bytes()
            ca = (where / CA_FILE).read_text() if (where / CA_FILE).is_file() else ""
        except (OSError, UnicodeDecodeError):
            ref = secret_ref(name, namespaces or {}) if secrets is not None else None
            found = _from_secret(name, ref, secrets) if ref is not None and secrets is not None else None
            if found is not None:
                out.append(found)
            continue
        out.append(CredentialInput(name, cert, key_digest(key), ca))
    return out


class CredentialStore:
    """Credentials under one folder, loaded on demand and cached by the files' (mtime, size). stored=True:
    certificates come from the config version's resolved inputs, the key from the folder (hash-checked)."""

    def __init__(self, folder: Path | None, stored: bool = False, secrets: TlsSecrets | None = None) -> None:
        self.folder = folder
        self.stored = stored
        self.secrets = secrets  # TLS Secret documents of the watched config folders
        self._cache: dict[str, tuple[tuple[object, ...], Credential]] = {}
        self._mismatch: set[str] = set()

    def describe(self, name: str) -> str:
        """Why `name` is not available (for diagnostics)."""
        if name in self._mismatch and self.folder is None:
            return f"{name}: the Secret's tls.key is not the key this config version was accepted with"
        if self.folder is None:
            return "no credentials folder is configured (set MECHA_CREDENTIALS_DIR)"
        where = self.folder / name
        if name in self._mismatch:
            return (
                f"{where / KEY_FILE} is not the key this config version was accepted with (its SHA-256 "
                "differs): every replica must mount the same credential files"
            )
        return f"expected {where / CERT_FILE} and {where / KEY_FILE}"

    def _from_inputs(self, name: str, found: CredentialInput) -> Credential | None:
        """The stored certificate with the mounted key, when the key file is still the one stored."""
        if found.secret:
            return self._from_secret(name, found)
        assert self.folder is not None
        key_path = self.folder / name / KEY_FILE
        stamps = (found, _stamp(key_path))
        cached = self._cache.get(name)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        try:
            key = key_path.read_bytes()
        except OSError:
            key = b""
        if key_digest(key) != found.key_sha256:
            self._mismatch.add(name)
            self._cache.pop(name, None)
            return None
        self._mismatch.discard(name)
        cred = make_credential(name, found.cert.encode(), key, found.ca.encode() if found.ca else None)
        self._cache[name] = (stamps, cred)
        return cred

    def _from_secret(self, name: str, found: CredentialInput) -> Credential | None:
        """The stored certificate with the key of the Secret document's file, when it is the one stored."""
        secret = self.secrets.get(found.secret) if self.secrets is not None else None
        key = secret.key if secret is not None else b""
        if key_digest(key) != found.key_sha256:
            self._mismatch.add(name)
            self._cache.pop(name, None)
            return None
        self._mismatch.discard(name)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == (found,):
            return cached[1]
        cred = make_credential(name, found.cert.encode(), key, found.ca.encode() if found.ca else None)
        self._cache[name] = ((found,), cred)
        return cred

    def get(self, name: str) -> Credential | None:
        """The credential, or None when its folder/files are missing or unreadable (or the name unsafe)."""
        if self.folder is None or not _safe(name):
            return None
        where = self.folder / name
        stamps = tuple(_stamp(where / f) for f in (CERT_FILE, KEY_FILE, CA_FILE))
        if stamps[0] is None or stamps[1] is None:
            self._cache.pop(name, None)
            return None
        found = self._cache.get(name)
        if found is not None and found[0] == stamps:
            return found[1]
        try:
            cred = _build(name, where)
        except OSError:
            return None
        self._cache[name] = (stamps, cred)
        return cred

    def load(self, names: set[str], inputs: ResolvedInputs | None = None) -> dict[str, Credential]:
        """inputs: the config version's resolved inputs (used when stored=True)."""
        out = {}
        for name in sorted(names):
            if self.stored:
                found = inputs.credential(name) if inputs is not None else None
                where = self.folder is not None or (found is not None and bool(found.secret))
                ok = found is not None and where and _safe(name)
                cred = self._from_inputs(name, found) if ok and found is not None else None
            else:
                cred = self.get(name)
            if cred is not None:
                out[name] = cred
        return out
