"""Inputs the config names but does not contain, resolved once and stored with the version it was accepted at.

A RequestAuthentication `jwksUri` outside the mesh (fetched) or `file://` (read), and the certificate files of
a Gateway `tls.credentialName` are read by the replica that accepts a change (xds/controlplane/inputs.py),
stored in the same transaction as the version, and every replica translates from that stored copy: replicas
emit identical bytes, and a rollback restores the JWKS of the version it returns to.

A credential's private key is a secret: only its SHA-256 is stored; every replica reads the key from the
same mounted file and refuses to serve a credential whose key file no longer matches (as istiod reads the
Kubernetes Secret at push time, and the key never reaches the database or its backups).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class JwksInput:
    uri: str
    text: str = ""  # the JWKS (the last good copy when error is set too)
    error: str = ""  # why the latest fetch/read failed; "" when text is fresh

    @property
    def stale(self) -> bool:
        return bool(self.text and self.error)


@dataclass(frozen=True, slots=True)
class CredentialInput:
    """A Gateway credentialName: tls.crt and ca.crt as they were read; tls.key by its hash only."""

    name: str
    cert: str
    key_sha256: str
    ca: str = ""
    secret: str = (
        ""  # NS/NAME of the Secret document (watched config folder) it came from; "": credentials folder
    )


@dataclass(frozen=True, slots=True)
class ResolvedInputs:
    jwks: tuple[JwksInput, ...] = ()  # sorted by uri
    credentials: tuple[CredentialInput, ...] = ()  # sorted by name

    def jwks_by_uri(self) -> dict[str, JwksInput]:
        return {j.uri: j for j in self.jwks}

    def jwks_texts(self) -> tuple[tuple[str, str], ...]:
        """(uri, JWKS text) of every usable copy: what the translator inlines (hashable, for memo keys)."""
        return tuple((j.uri, j.text) for j in self.jwks if j.text)

    def credential(self, name: str) -> CredentialInput | None:
        return next((c for c in self.credentials if c.name == name), None)

    @property
    def empty(self) -> bool:
        return not (self.jwks or self.credentials)

    def to_json(self) -> str:
        """Canonical text (sorted keys, no spaces): equal inputs give equal text, hence equal digests."""
        body = {
            "jwks": [{"uri": j.uri, "text": j.text, "error": j.error} for j in self.jwks],
            "credentials": [
                # "secret" only when set: the digests of versions stored before it existed stay the same
                {"name": c.name, "cert": c.cert, "ca": c.ca, "key_sha256": c.key_sha256}
                | ({"secret": c.secret} if c.secret else {})
                for c in self.credentials
            ],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return "" if self.empty else hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> ResolvedInputs:
        if not text:
            return EMPTY_INPUTS
        body: Mapping[str, Any] = json.loads(text)
        return cls.of(
            [JwksInput(str(j["uri"]), str(j.get("text", "")), str(j.get("error", ""))) for j in body["jwks"]],
            [
                CredentialInput(
                    str(c["name"]),
                    str(c["cert"]),
                    str(c["key_sha256"]),
                    str(c.get("ca", "")),
                    str(c.get("secret", "")),
                )
                for c in body["credentials"]
            ],
        )

    @classmethod
    def of(cls, jwks: list[JwksInput], credentials: list[CredentialInput]) -> ResolvedInputs:
        return cls(tuple(sorted(jwks, key=lambda j: j.uri)), tuple(sorted(credentials, key=lambda c: c.name)))

    def changes_from(self, before: ResolvedInputs) -> tuple[str, ...]:
        """What differs from `before` ("jwks <uri>", "credential <name>"): recorded in the history."""
        old_jwks = {j.uri: j for j in before.jwks}
        new_jwks = {j.uri: j for j in self.jwks}
        old_creds = {c.name: c for c in before.credentials}
        new_creds = {c.name: c for c in self.credentials}
        uris = sorted(old_jwks.keys() | new_jwks.keys())
        out = [f"jwks {u}" for u in uris if old_jwks.get(u) != new_jwks.get(u)]
        out += [
            f"credential {n}"
            for n in sorted(old_creds.keys() | new_creds.keys())
            if old_creds.get(n) != new_creds.get(n)
        ]
        return tuple(out)


EMPTY_INPUTS = ResolvedInputs()
