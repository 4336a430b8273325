"""Kubernetes `v1 Secret` documents: never stored with their values, and TLS ones served from their file.

A Secret is not mesh config, but a Gateway listener's certificateRefs names one. A `kubernetes.io/tls` Secret
in a watched config folder is the credential NS/NAME (and NAME for Gateways of namespace NS: see
xds/controlplane/inputs.py): its tls.crt/ca.crt are resolved with the config version like the credentials
folder's, and its tls.key stays in the file it came from, served only while its SHA-256 is the stored one.

The config store, its history and backups never hold a Secret's values: every Secret document is stored
redacted (`redact`), and a Secret carrying a private key sent over the API is refused (`refuse_keys`). A
file holding a private key must not be readable by group or others (0600, like the credentials folder's).
"""

from __future__ import annotations

import base64
import binascii
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xds.diagnostics import Diagnostic, Severity
from xds.sources.loader import RawDocument, load_text, strip_server_fields

TLS_TYPE = "kubernetes.io/tls"
KEY = "tls.key"
REDACTED = "<redacted>"
_VALUES = ("data", "stringData")


def is_secret(doc: RawDocument) -> bool:
    return doc.api_version == "v1" and doc.kind == "Secret"


def carries_key(doc: RawDocument) -> bool:
    """Any value named tls.key (whatever the type: a mistyped Secret still holds a key)."""
    return any(isinstance(doc.body.get(f), dict) and KEY in doc.body[f] for f in _VALUES)


def redact(doc: RawDocument) -> RawDocument:
    """The Secret with every value replaced by REDACTED (keys kept: `mecha get` shows what it holds)."""
    body = dict(doc.body)
    for f in _VALUES:
        if isinstance(body.get(f), dict):
            body[f] = {str(k): REDACTED for k in body[f]}
    _, source = strip_server_fields({**body, "status": None}, "")
    return replace(doc, body=body, source=source)


def refuse_keys(docs: list[RawDocument], diags: list[Diagnostic]) -> list[RawDocument]:
    """An API change: a Secret carrying a private key is refused (an error naming the document); every
    other Secret is kept redacted."""
    out: list[RawDocument] = []
    for doc in docs:
        if not is_secret(doc):
            out.append(doc)
            continue
        if carries_key(doc):
            msg = (
                f"Secret {doc.location.namespace}/{doc.location.name} carries a private key: keys never go "
                "through the config store; put the Secret in a watched config folder (file mode 0600) or "
                "its files in the credentials folder (MECHA_CREDENTIALS_DIR/NAME/tls.crt, tls.key)"
            )
            diags.append(Diagnostic(doc.location, "data.tls.key", msg, Severity.ERROR, "secret-key"))
            continue
        out.append(redact(doc))
    return out


def _open_to_others(path: Path) -> int | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return stat.S_IMODE(mode) if mode & 0o077 else None


def guard_folder(docs: list[RawDocument], diags: list[Diagnostic]) -> list[RawDocument]:
    """A watched folder's documents: Secrets redacted; a file holding a private key that group or others
    can read is refused (an error naming the file)."""
    out: list[RawDocument] = []
    for doc in docs:
        if not is_secret(doc):
            out.append(doc)
            continue
        mode = _open_to_others(Path(doc.location.file)) if carries_key(doc) else None
        if mode is not None:
            msg = (
                f"{doc.location.file} holds the private key of Secret {doc.location.namespace}/"
                f"{doc.location.name} and is readable by group or others (mode {mode:04o}): chmod 600 it"
            )
            diags.append(Diagnostic(doc.location, "data.tls.key", msg, Severity.ERROR, "secret-mode"))
        out.append(redact(doc))
    return out


@dataclass(frozen=True, slots=True)
class TlsSecret:
    ref: str  # NS/NAME
    file: str
    cert: bytes
    key: bytes
    ca: bytes = b""


def _value(body: dict[str, Any], name: str) -> bytes | None:
    """stringData wins over data, as the API server merges them; data is base64."""
    plain = body.get("stringData")
    if isinstance(plain, dict) and isinstance(plain.get(name), str):
        return str(plain[name]).encode()
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get(name), str):
        try:
            return base64.b64decode(str(data[name]), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def tls_secret(doc: RawDocument) -> TlsSecret | None:
    """A `kubernetes.io/tls` Secret with tls.crt and tls.key, or None."""
    if not is_secret(doc) or doc.body.get("type") != TLS_TYPE:
        return None
    cert, key = _value(doc.body, "tls.crt"), _value(doc.body, KEY)
    if not cert or not key:
        return None
    ref = f"{doc.location.namespace}/{doc.location.name}"
    return TlsSecret(ref, doc.location.file, cert, key, _value(doc.body, "ca.crt") or b"")


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not any(x.startswith(".") for x in p.relative_to(folder).parts)
    )


class TlsSecrets:
    """The TLS Secrets of the watched config folders, by NS/NAME; files re-read only when their (mtime,
    size) changes. A file readable by group or others is not read for keys."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = tuple(folders)
        self._files: dict[Path, tuple[tuple[int, int], tuple[TlsSecret, ...]]] = {}

    def _read(self, path: Path) -> tuple[TlsSecret, ...]:
        try:
            st = path.stat()
        except OSError:
            return ()
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._files.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found: tuple[TlsSecret, ...] = ()
        if not st.st_mode & 0o077:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = ""
            if "Secret" in text:  # most config files hold none: skip parsing them twice
                docs, _ = load_text(text, str(path))
                found = tuple(s for s in map(tls_secret, docs) if s is not None)
        self._files[path] = (stamp, found)
        return found

    def all(self) -> dict[str, TlsSecret]:
        out: dict[str, TlsSecret] = {}
        for folder in self.folders:
            for path in _yaml_files(folder):
                for secret in self._read(path):
                    out.setdefault(secret.ref, secret)
        return out

    def get(self, ref: str) -> TlsSecret | None:
        return self.all().get(ref)
