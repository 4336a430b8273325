"""Gateway `tls.credentialName` -> SDS secrets read from a folder (istiod reads Kubernetes Secrets).

`<folder>/<name>/tls.crt` + `tls.key` become Secret `kubernetes://<name>`; an optional `ca.crt` becomes
`kubernetes://<name>-cacert` (validation context, MUTUAL), the names istiod's SDS uses. Files are re-read
only when their (mtime, size) changes, so an unchanged credential keeps the very same Resource objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls

from xds import types
from xds.cache.snapshot import Resource

SECRET_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"
CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"


def secret_name(credential: str) -> str:
    return f"{SECRET_PREFIX}{credential}"


def ca_secret_name(credential: str) -> str:
    return f"{SECRET_PREFIX}{credential}{CA_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Credential:
    name: str
    certificate: Resource  # kubernetes://<name>
    ca: Resource | None = None  # kubernetes://<name>-cacert when ca.crt exists

    @property
    def resources(self) -> list[Resource]:
        return [self.certificate] if self.ca is None else [self.certificate, self.ca]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _build(name: str, folder: Path) -> Credential:
    cert = (folder / CERT_FILE).read_bytes()
    key = (folder / KEY_FILE).read_bytes()
    secret = tls.Secret(
        name=secret_name(name),
        tls_certificate=tls.TlsCertificate(
            certificate_chain=core.DataSource(inline_bytes=cert),
            private_key=core.DataSource(inline_bytes=key),
        ),
    )
    ca_res = None
    ca_path = folder / CA_FILE
    if ca_path.is_file():
        ca = tls.Secret(
            name=ca_secret_name(name),
            validation_context=tls.CertificateValidationContext(
                trusted_ca=core.DataSource(inline_bytes=ca_path.read_bytes())
            ),
        )
        ca_res = Resource.make(types.SECRET, ca_secret_name(name), bytes(ca))
    return Credential(name, Resource.make(types.SECRET, secret_name(name), bytes(secret)), ca_res)


class CredentialStore:
    """Credentials under one folder, loaded on demand and cached by the files' (mtime, size)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._cache: dict[str, tuple[tuple[object, ...], Credential]] = {}

    def describe(self, name: str) -> str:
        """Why `name` is not available (for diagnostics)."""
        if self.folder is None:
            return "no credentials folder is configured (set MECHA_CREDENTIALS_DIR)"
        where = self.folder / name
        return f"expected {where / CERT_FILE} and {where / KEY_FILE}"

    def get(self, name: str) -> Credential | None:
        """The credential, or None when its folder/files are missing or unreadable (or the name unsafe)."""
        if self.folder is None or not name or "/" in name or name in (".", ".."):
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

    def load(self, names: set[str]) -> dict[str, Credential]:
        out = {}
        for name in sorted(names):
            cred = self.get(name)
            if cred is not None:
                out[name] = cred
        return out
