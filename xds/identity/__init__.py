"""Workload identity: credentials issued at deploy time, checked on every xDS stream and CSR."""

from xds.identity.authenticator import Authenticator, AuthError, CredentialAuthenticator
from xds.identity.credential import (
    Credential,
    CredentialError,
    CredentialIssuer,
    CredentialVerifier,
    parse_labels,
)
from xds.identity.revocation import RevocationList

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
