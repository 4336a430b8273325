"""Who may open an xDS stream or ask for a certificate: the bearer credential in the gRPC metadata.

The server hands the metadata and the identity parsed from the node to an Authenticator; it returns the
verified Credential or raises AuthError with the gRPC status and a message naming the refused field. The
node may claim less than its credential allows, never more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import grpc

from xds.identity.credential import Credential, CredentialError, CredentialVerifier
from xds.identity.revocation import RevocationList
from xds.proxy import ProxyIdentity

AUTHORIZATION = "authorization"


class AuthError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Authenticator(Protocol):
    def credential(self, metadata: Mapping[str, str]) -> Credential: ...

    def authenticate(self, metadata: Mapping[str, str], identity: ProxyIdentity) -> Credential: ...

    def is_revoked(self, cred: Credential) -> bool: ...


def bearer(metadata: Mapping[str, str]) -> str:
    value = metadata.get(AUTHORIZATION, "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(
            grpc.StatusCode.UNAUTHENTICATED,
            "metadata authorization: a workload credential is required (Bearer <token> from "
            "`mecha credential issue`; the proxy's `mecha agent` sends it)",
        )
    return token.strip()


def metadata_dict(pairs: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs or ():
        if isinstance(value, str):
            out[key.lower()] = value
    return out


class CredentialAuthenticator:
    def __init__(self, verifier: CredentialVerifier, revocations: RevocationList) -> None:
        self.verifier = verifier
        self.revocations = revocations

    def is_revoked(self, cred: Credential) -> bool:
        return self.revocations.is_revoked(cred)

    def credential(self, metadata: Mapping[str, str]) -> Credential:
        """The verified, unrevoked credential of a request (no node to compare: the CA endpoint)."""
        try:
            cred = self.verifier.verify(bearer(metadata))
        except CredentialError as exc:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, f"metadata authorization: {exc}") from None
        if self.revocations.is_revoked(cred):
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, f"metadata authorization: credential {cred.jti} "
                            f"of proxy {cred.proxy_id!r} is revoked")  # fmt: skip
        return cred

    def authenticate(self, metadata: Mapping[str, str], identity: ProxyIdentity) -> Credential:
        cred = self.credential(metadata)
        problem = overclaim(cred, identity)
        if problem:
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED, problem)
        return cred


def overclaim(cred: Credential, identity: ProxyIdentity) -> str:
    """ "" when the node claims nothing beyond the credential; else the first field that claims more."""
    if not cred.allows_proxy_id(identity.id):
        named = f"{cred.proxy_id!r} or {cred.proxy_id}.<instance>" if cred.instances else repr(cred.proxy_id)
        return f"node.id: {identity.id!r} is not the proxy the credential names ({named})"
    if str(identity.mode) != cred.mode:
        return f"node.metadata.mecha.mode: {identity.mode!s} is not the credential's mode ({cred.mode})"
    if identity.namespace != cred.namespace:
        return (
            f"node.metadata.mecha.namespace: {identity.namespace!r} is not the credential's namespace "
            f"({cred.namespace!r})"
        )
    for key, value in identity.labels:
        if not cred.allows_label(key, value):
            return f"node.metadata.mecha.labels.{key}: {value!r} is not a label the credential allows"
    for i, app in enumerate(identity.apps):
        if app.namespace != cred.namespace:
            return (
                f"node.metadata.mecha.apps[{i}].namespace: {app.namespace!r} is not the credential's "
                f"namespace ({cred.namespace!r})"
            )
        for key, value in app.labels:
            if not cred.allows_label(key, value):
                where = f"node.metadata.mecha.apps[{i}].labels.{key}"
                return f"{where}: {value!r} is not a label the credential allows"
    return registration_overclaim(cred, identity)


def registration_overclaim(cred: Credential, identity: ProxyIdentity) -> str:
    """A proxy naming a workload group registers an endpoint: only the group and addresses its credential
    names (a stolen proxy id cannot put itself behind another service, or point callers elsewhere)."""
    if not identity.workload_group:
        return ""
    where = "node.metadata.mecha"
    if identity.workload_group != cred.workload_group:
        allowed = f"({cred.workload_group!r})" if cred.workload_group else "(none: it may not register)"
        return f"{where}.workload_group: {identity.workload_group!r} is not the credential's group {allowed}"
    if not cred.allows_address(identity.address):
        return (
            f"{where}.address: {identity.address!r} is not an address the credential allows "
            f"({', '.join(cred.addresses)})"
        )
    return ""
