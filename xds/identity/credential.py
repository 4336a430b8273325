"""Workload credentials: EdDSA-signed JWTs issued at deploy time, checked on every xDS stream and CSR.

A credential names one proxy (id, mode), its namespace, the service accounts it may get certificates for and
the labels it may claim (Kuma's dataplane token; istio-agent's workload credential). The control plane keeps
the signing key (Ed25519, 0600 in the state folder); anyone holding the public half can verify.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from xds.statedir import write_private_file

ISSUER = "mecha-controlplane"
AUDIENCE = "mecha-xds"
ALGORITHM = "EdDSA"
SIGNING_KEY_FILE = "identity/signing-key.pem"  # under the state folder
MODES = ("sidecar", "node", "gateway", "proxyless")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # DNS-1123-ish: also a safe SPIFFE path segment
# an instance credential's node ids: <proxy id>.<instance>, the instance one DNS label (a container hostname)
INSTANCE_SEPARATOR = "."
INSTANCE_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class CredentialError(ValueError):
    """A credential that cannot be issued or accepted; the message names the field and the reason."""


@dataclass(frozen=True, slots=True)
class Credential:
    """What one proxy may be: verified claims of its token."""

    proxy_id: str
    namespace: str
    service_accounts: tuple[str, ...]
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # key -> values it may claim
    mode: str = "sidecar"
    jti: str = ""
    issued_at: int = 0
    expires_at: int = 0
    # auto-registration (xds/controlplane/registration.py): the WorkloadGroup it may join, and the addresses
    # (IPs or CIDRs) its endpoint may have; no group: the proxy registers nothing
    workload_group: str = ""
    addresses: tuple[str, ...] = ()
    # scaled replicas sharing one credential (compose --scale): node ids <proxy_id>.<instance> are allowed too
    instances: bool = False

    def allows_proxy_id(self, proxy_id: str) -> bool:
        if proxy_id == self.proxy_id:
            return True
        prefix = self.proxy_id + INSTANCE_SEPARATOR
        return (
            self.instances
            and proxy_id.startswith(prefix)
            and bool(INSTANCE_LABEL.match(proxy_id[len(prefix) :]))
        )

    def spiffe_ids(self, trust_domain: str) -> tuple[str, ...]:
        return tuple(f"spiffe://{trust_domain}/ns/{self.namespace}/sa/{sa}" for sa in self.service_accounts)

    def allows_label(self, key: str, value: str) -> bool:
        return value in self.labels.get(key, ())

    def allows_address(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False  # a name could resolve anywhere: registration needs an IP the credential covers
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.addresses)


def instance_label(hostname: str) -> str:
    """A host name as the instance part of a node id (one DNS label: lowercase, at most 63 characters)."""
    label = re.sub(r"[^a-z0-9-]+", "-", hostname.lower().split(".")[0])[:63].strip("-")
    if not INSTANCE_LABEL.match(label):
        raise CredentialError(f"host name {hostname!r}: no instance name can be made of it")
    return label


def node_id_of(cred: Credential, hostname: str) -> str:
    """The node id a proxy runs as: the credential's, or <id>.<instance> (its container's host name) when the
    credential is shared by scaled replicas; the agent and the capability service's reports agree on it."""
    if not cred.instances:
        return cred.proxy_id
    return f"{cred.proxy_id}{INSTANCE_SEPARATOR}{instance_label(hostname)}"


def parse_labels(items: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """["app=reviews", "version=v1", "version=v2"] -> {"app": ("reviews",), "version": ("v1", "v2")}."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CredentialError(f"label {item!r}: expected KEY=VALUE")
        out.setdefault(key, []).append(value)
    return {k: tuple(sorted(set(v))) for k, v in out.items()}


def _check_networks(addresses: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for text in addresses:
        try:
            out.append(str(ipaddress.ip_network(text.strip(), strict=False)))
        except ValueError:
            problem = f"address {text!r}: expected an IP address or a CIDR (10.0.0.0/24)"
            raise CredentialError(problem) from None
    return tuple(sorted(set(out)))


def _check_name(value: str, where: str) -> str:
    if not _NAME.match(value) or len(value) > 253:
        raise CredentialError(
            f"{where}: {value!r} is not a DNS-1123 name (lowercase letters, digits, '-', '.')"
        )
    return value


class CredentialIssuer:
    """Signs credentials with the control plane's Ed25519 key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()

    @classmethod
    def load_or_create(cls, state_dir: Path) -> CredentialIssuer:
        """The signing key kept 0600 in the state folder (created on first use)."""
        path = state_dir / SIGNING_KEY_FILE
        if path.exists():
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise CredentialError(f"signing key {path}: unreadable ({exc})") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise CredentialError(f"signing key {path}: expected an Ed25519 private key")
            return cls(key)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private_file(path, pem)
        return cls(key)

    def issue(
        self,
        proxy_id: str,
        namespace: str,
        service_accounts: Iterable[str],
        labels: Mapping[str, Iterable[str]] | None = None,
        mode: str = "sidecar",
        ttl_s: float = 365 * 86400,
        now: float | None = None,
        workload_group: str = "",
        addresses: Iterable[str] = (),
        instances: bool = False,
    ) -> tuple[str, Credential]:
        """A signed token and the credential it carries."""
        if not proxy_id or len(proxy_id) > 253 or any(c.isspace() for c in proxy_id):
            raise CredentialError(f"proxy id {proxy_id!r}: expected a non-empty name without spaces")
        _check_name(namespace, "namespace")
        accounts = tuple(_check_name(sa, "service account") for sa in service_accounts)
        if not accounts:
            raise CredentialError("service account: at least one is required")
        if mode not in MODES:
            raise CredentialError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if ttl_s <= 0:
            raise CredentialError(f"ttl: must be positive, got {ttl_s}")
        networks = _check_networks(addresses)
        if workload_group:
            _check_name(workload_group, "workload group")
            if not networks:
                raise CredentialError("address: a workload group credential needs --address (IP or CIDR)")
        issued = int(now if now is not None else time.time())
        cred = Credential(
            proxy_id=proxy_id,
            namespace=namespace,
            service_accounts=accounts,
            labels={str(k): tuple(sorted({str(v) for v in vs})) for k, vs in (labels or {}).items()},
            mode=mode,
            jti=uuid.uuid4().hex,
            issued_at=issued,
            expires_at=issued + int(ttl_s),
            workload_group=workload_group,
            addresses=networks,
            instances=instances,
        )
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": cred.proxy_id,
            "ns": cred.namespace,
            "sa": list(cred.service_accounts),
            "labels": {k: list(v) for k, v in cred.labels.items()},
            "mode": cred.mode,
            "jti": cred.jti,
            "iat": cred.issued_at,
            "exp": cred.expires_at,
        }
        if cred.workload_group:
            claims |= {"wg": cred.workload_group, "addr": list(cred.addresses)}
        if cred.instances:
            claims["inst"] = True
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), cred


class CredentialVerifier:
    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key

    def verify(self, token: str, now: float | None = None) -> Credential:
        """The credential of a valid token; CredentialError says why one is not (expired, bad signature)."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # never "none", never an algorithm the token picks
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise CredentialError("credential expired") from None
        except jwt.PyJWTError as exc:
            raise CredentialError(f"credential invalid: {exc}") from None
        return credential_from_claims(claims)


def credential_from_claims(claims: Mapping[str, object]) -> Credential:
    labels = claims.get("labels") or {}
    sas = claims.get("sa") or []
    addresses = claims.get("addr") or []
    if not isinstance(labels, Mapping) or not isinstance(sas, list) or not isinstance(addresses, list):
        raise CredentialError("credential invalid: labels must be a map, sa and addr lists")
    return Credential(
        proxy_id=str(claims["sub"]),
        namespace=str(claims.get("ns") or ""),
        service_accounts=tuple(str(s) for s in sas),
        labels={
            str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in labels.items()
        },
        mode=str(claims.get("mode") or "sidecar"),
        jti=str(claims["jti"]),
        issued_at=int(claims.get("iat") or 0),  # type: ignore[call-overload]
        expires_at=int(claims.get("exp") or 0),  # type: ignore[call-overload]
        workload_group=str(claims.get("wg") or ""),
        addresses=tuple(str(a) for a in addresses),
        instances=claims.get("inst") is True,
    )


def read_unverified(token: str) -> Credential:
    """The claims of one's own token (the agent needs its SPIFFE ids for the CSR; the server verifies)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise CredentialError(f"credential unreadable: {exc}") from None
    return credential_from_claims(claims)


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise CredentialError(f"credential file {path}: {exc.strerror}") from None
    if not token:
        raise CredentialError(f"credential file {path}: empty")
    return token
