"""The control plane's side of workload identity: who may open xDS streams and get certificates.

Secure (the default): the xDS port serves TLS with a certificate from the mesh CA, every stream and CSR must
carry a credential signed by the state folder's key, and workload keys stay with the agents (the control
plane serves SDS references only). `--insecure-xds` / MECHA_INSECURE_XDS=1 keeps the old plaintext,
unauthenticated port as a transition (anyone reaching it can be any proxy).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from xds.agent.channel import SERVER_NAME
from xds.ca.authority import CertificateAuthority
from xds.ca.service import CertificateService
from xds.ca.watch import reload_interval, watch_plugin_ca
from xds.controlplane.adminrelay import AdminRelays
from xds.controlplane.replica_relay import ReplicaRelay
from xds.identity.authenticator import CredentialAuthenticator
from xds.identity.credential import Credential, CredentialIssuer, CredentialVerifier
from xds.identity.revocation import RevocationList
from xds.statedir import read_token

log = logging.getLogger("mecha.identity")
SERVING_CERT_TTL = timedelta(days=365)
ENV_SERVING_CERT_TTL = "MECHA_SERVING_CERT_TTL"  # seconds; the xDS port's certificate, renewed at half of it
EXPIRY_CHECK_S = 1.0  # how often open streams are checked for an expired credential
CA_FOLDER = "ca"  # under the state folder unless MECHA_CA_DIR says otherwise


@dataclass
class XdsIdentity:
    secure: bool
    authenticator: CredentialAuthenticator | None = None
    issuer: CredentialIssuer | None = None
    ca: CertificateAuthority | None = None
    server_credentials: grpc.ServerCredentials | None = None
    handlers: list[grpc.GenericRpcHandler] = field(default_factory=list)
    serving: ServingCertificate | None = None
    admin_relay: AdminRelays | None = None  # agents' streams that read their Envoy's admin (secure only)
    replica_relay: ReplicaRelay | None = None  # those reads asked of / by the other replicas (secure only)
    _expiry: asyncio.Task[None] | None = None
    _ca_watch: asyncio.Task[None] | None = None

    @property
    def agent_sds(self) -> bool:
        """Workload keys come from agents: the translator references their SDS, the CA never mints keys."""
        return self.secure

    def server_options(self) -> dict[str, Any]:
        return {
            "authenticator": self.authenticator,
            "server_credentials": self.server_credentials,
            "extra_handlers": self.handlers,
        }

    def revoke(self, server: Any, jti: str = "", proxy_id: str = "") -> dict[str, Any]:
        """Revoke one credential or every credential of a proxy; its open streams close at once."""
        if self.authenticator is None:
            raise ValueError("the control plane runs with --insecure-xds: there are no credentials to revoke")
        if bool(jti) == bool(proxy_id):
            raise ValueError("give exactly one of jti or proxy_id")
        revocations = self.authenticator.revocations
        if jti:
            revocations.revoke_id(jti)
        else:
            revocations.revoke_proxy(proxy_id, time.time())
        closed = server.close_streams(self.authenticator.is_revoked)
        log.warning("revoked %s; %d open streams closed", f"credential {jti}" if jti else f"proxy {proxy_id}",
                    closed)  # fmt: skip
        return {"revoked": jti or proxy_id, "closed_streams": closed}

    def close_expired(self, server: Any, now: float | None = None) -> int:
        moment = now if now is not None else time.time()
        return int(server.close_streams(lambda c: isinstance(c, Credential) and c.expires_at <= moment))

    def start(self, server: Any) -> None:
        """Close streams whose credential expires while they are open (checked every EXPIRY_CHECK_S)."""
        if self.secure and self._expiry is None:
            self._expiry = asyncio.create_task(self._close_expired_forever(server), name="credential-expiry")
        if self.ca is not None and self.ca.plugin_dir is not None and self._ca_watch is None:
            renew = self.serving.renew_if_untrusted if self.serving is not None else None
            watch = watch_plugin_ca(self.ca, reload_interval(), renew)
            self._ca_watch = asyncio.create_task(watch, name="plugin-ca-watch")

    async def stop(self) -> None:
        for task in (self._expiry, self._ca_watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._expiry = self._ca_watch = None
        if self.replica_relay is not None:
            await self.replica_relay.close()

    async def _close_expired_forever(self, server: Any) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            try:
                closed = self.close_expired(server)
            except Exception:  # never let one bad stream stop the check for all others
                log.exception("closing streams with expired credentials failed")
                continue
            if closed:
                log.warning("%d open xDS streams closed: their credential expired", closed)


class ServingCertificate:
    """The xDS/CA port's TLS certificate, signed by the mesh CA and renewed at half its lifetime.

    gRPC asks `fetch` on every TLS handshake (dynamic server credentials): past half its life a new key and
    certificate are made and returned, so new connections get the new one; open connections keep theirs (a
    TLS session is not re-checked), so agents keep their streams."""

    def __init__(self, ca: CertificateAuthority, dns: list[str], ips: list[str], ttl: timedelta) -> None:
        self.ca, self.dns, self.ips, self.ttl = ca, dns, ips, ttl
        self._lock = threading.Lock()  # fetch runs on gRPC's threads
        self.renewals = 0
        self._config = self._mint()

    def _mint(self) -> grpc.ServerCertificateConfiguration:
        cert_pem, key_pem = self.ca.serving_certificate(self.dns, self.ips, self.ttl)
        self._renew_at, self._cert_pem = datetime.now(UTC) + self.ttl / 2, cert_pem
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)])

    def renew_if_untrusted(self) -> None:
        """After a plug-in CA reload: renewed at the next handshake once its root left the bundle (while the
        old root stays, agents that know only it keep connecting)."""
        with self._lock:
            if not self.ca.trusts(self._cert_pem):
                self._renew_at = datetime.now(UTC)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._config, self.fetch)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """None: keep the current certificate; else the renewed one."""
        with self._lock:
            if datetime.now(UTC) < self._renew_at:
                return None
            try:
                self._config = self._mint()
            except Exception:  # keep serving the current one; the next handshake tries again
                log.exception("renewing the xDS port's certificate failed")
                return None
            self.renewals += 1
            log.info("xDS port certificate renewed (valid %ss)", int(self.ttl.total_seconds()))
            return self._config


def serving_ttl() -> timedelta:
    raw = os.environ.get(ENV_SERVING_CERT_TTL, "").strip()
    if not raw:
        return SERVING_CERT_TTL
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_SERVING_CERT_TTL}={raw!r}: expected a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{ENV_SERVING_CERT_TTL}={raw!r}: must be positive")
    return timedelta(seconds=seconds)


def xds_identity(settings: Any) -> XdsIdentity:
    """From the control plane's Settings (insecure_xds, state_dir, ca_dir, trust_domain, xds_host...)."""
    if settings.insecure_xds:
        log.warning(
            "xDS port %s is PLAINTEXT and UNAUTHENTICATED (--insecure-xds): anything that reaches it can "
            "claim to be any proxy%s",
            settings.xds_port,
            " and receive its private key" if settings.mtls else "",
        )
        return XdsIdentity(secure=False)
    if settings.ca_dir is None:  # one root for the serving certificate, the CSR endpoint and the mesh
        settings.ca_dir = settings.state_dir / CA_FOLDER
    ca = CertificateAuthority.load_or_create(settings.ca_dir, settings.trust_domain)
    issuer = CredentialIssuer.load_or_create(settings.state_dir)
    authenticator = CredentialAuthenticator(
        CredentialVerifier(issuer.public_key), RevocationList.in_state_dir(settings.state_dir)
    )
    dns, ips = _names(settings.xds_host)
    serving = ServingCertificate(ca, dns, ips, serving_ttl())
    service = CertificateService(ca, authenticator, timedelta(seconds=settings.cert_ttl))
    relay = AdminRelays(authenticator)  # proxy-config through the agents: Envoy admins stay on loopback
    # a replica forwards a read to the one holding the proxy's relay, with the API token replicas share
    replicas = ReplicaRelay(relay, lambda: read_token(settings.state_dir), lambda: ca.root_pem)
    return XdsIdentity(
        secure=True,
        authenticator=authenticator,
        issuer=issuer,
        ca=ca,
        server_credentials=serving.credentials(),
        handlers=[service.handler(), relay.handler(), replicas.handler()],
        serving=serving,
        admin_relay=relay,
        replica_relay=replicas,
    )


def _names(host: str) -> tuple[list[str], list[str]]:
    """DNS and IP SANs of the serving certificate: the fixed name agents check, plus the bound host."""
    dns, ips = [SERVER_NAME, "localhost"], ["127.0.0.1"]
    try:
        ipaddress.ip_address(host)
        if host not in ips and host not in ("0.0.0.0", "::"):
            ips.append(host)
    except ValueError:
        if host and host not in dns:
            dns.append(host)
    return dns, ips
