"""Workload identity: credentials issued at deploy time, checked on every xDS stream and CSR.

Names load lazily: the agent reads its own credential (xds.identity.credential) on a sidecar's start path
and must not import the control plane's authenticator with it."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.identity.authenticator import Authenticator, AuthError, CredentialAuthenticator
    from xds.identity.credential import (
        Credential,
        CredentialError,
        CredentialIssuer,
        CredentialVerifier,
        parse_labels,
    )
    from xds.identity.revocation import RevocationList

_WHERE = {
    "AuthError": "xds.identity.authenticator",
    "Authenticator": "xds.identity.authenticator",
    "CredentialAuthenticator": "xds.identity.authenticator",
    "Credential": "xds.identity.credential",
    "CredentialError": "xds.identity.credential",
    "CredentialIssuer": "xds.identity.credential",
    "CredentialVerifier": "xds.identity.credential",
    "parse_labels": "xds.identity.credential",
    "RevocationList": "xds.identity.revocation",
}
__all__ = [
    "AuthError",
    "Authenticator",
    "Credential",
    "CredentialAuthenticator",
    "CredentialError",
    "CredentialIssuer",
    "CredentialVerifier",
    "RevocationList",
    "parse_labels",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'xds.identity' has no attribute {name!r}")
