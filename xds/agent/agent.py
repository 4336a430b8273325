"""`mecha agent`: beside one Envoy (or a proxyless gRPC app), holding the proxy's credential and key.

Envoy's bootstrap points at two Unix sockets in a 0700 folder: xds.sock (ADS, proxied to the control plane
over TLS with the credential) and sds.sock (the workload certificate and key, generated here). The bootstrap
holds no credential and no key ever crosses the network (istio-agent's design).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from xds.agent.certs import (
    CertificateClient,
    CertificateError,
    WorkloadCert,
    rotate_forever,
    write_cert_files,
)
from xds.agent.channel import CredentialSource, open_channel
from xds.agent.config import AgentConfig
from xds.agent.node import rewrite_for
from xds.agent.sds import SdsServer
from xds.agent.xdsproxy import XdsProxy
from xds.ca.watch import reload_interval
from xds.identity.credential import read_unverified
from xds.statedir import ensure_private_dir

log = logging.getLogger("mecha.agent")
XDS_SOCKET = "xds.sock"
SDS_SOCKET = "sds.sock"
MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the terminating NUL
__all__ = ["SDS_SOCKET", "XDS_SOCKET", "Agent", "AgentConfig", "run_agent"]


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.credential = CredentialSource(config.credential_file)
        credential = read_unverified(self.credential.token())
        # scaled replicas: <proxy id>.<host name> at this container's address, else the bootstrap's node
        self.node = rewrite_for(credential, config.control_plane)
        self.proxy_id = self.node.node_id if self.node is not None else credential.proxy_id
        self.cert: WorkloadCert | None = None
        if config.root_cert is not None:
            _check_root_file(config.root_cert)  # else gRPC only logs its TLS failures, on every retry
        self._channel = open_channel(config.control_plane, config.root_cert)
        self._certs = CertificateClient(
            self._channel, self.credential, config.trust_domain, config.cert_ttl_s
        )
        # Envoy asks for secrets with its bootstrap's node id (the credential's, before any rewrite)
        self._sds = SdsServer(credential.proxy_id) if config.with_sds else None
        xds = XdsProxy(self._channel, self.credential, self.proxy_id, self.node)
        self._xds = xds if config.with_xds_proxy else None
        self._rotation: asyncio.Task[None] | None = None
        self._root_watch: asyncio.Task[None] | None = None
        self._admin_relay: asyncio.Task[None] | None = None
        self._file_roots: list[bytes] = []  # PEM blocks of the root file, as last read
        self.rotations = 0

    @property
    def rotation(self) -> asyncio.Task[None] | None:
        """The rotation task once started (it ends only by cancellation or a bug)."""
        return self._rotation

    @property
    def xds_socket(self) -> Path:
        return self.config.socket_dir / XDS_SOCKET

    @property
    def sds_socket(self) -> Path:
        return self.config.socket_dir / SDS_SOCKET

    async def start(self, first_cert_within_s: float = 30.0) -> None:
        """The sockets Envoy reads, then the first certificate (retrying while the control plane starts).

        The sockets open first so Envoy's start and its first xDS exchange overlap the key generation and the
        CSR round trip: Envoy's SDS request waits on the socket until the certificate is published (its
        listeners warm meanwhile), and the ADS proxy needs only the credential."""
        for path in (self.xds_socket, self.sds_socket):
            if len(str(path.resolve())) > MAX_UNIX_PATH:
                raise ValueError(
                    f"socket folder {self.config.socket_dir}: {path} is too long for a Unix socket"
                )
        ensure_private_dir(self.config.socket_dir)  # 0700: only the workload's user reaches the sockets
        self._share_with_group(self.config.socket_dir, 0o710)
        if self._sds is not None:
            self.sds_socket.unlink(missing_ok=True)
            await self._sds.start(str(self.sds_socket))
            os.chmod(self.sds_socket, 0o600)
            self._share_with_group(self.sds_socket, 0o660)
        if self._xds is not None:
            self.xds_socket.unlink(missing_ok=True)
            await self._xds.start(str(self.xds_socket))
            os.chmod(self.xds_socket, 0o600)
            self._share_with_group(self.xds_socket, 0o660)
        self.cert = await self._first_certificate(first_cert_within_s)
        await self._publish(self.cert)
        self._rotation = asyncio.create_task(rotate_forever(self._certs, self.cert, self._publish))
        if self.config.root_cert is not None:
            self._root_watch = asyncio.create_task(self._follow_root_file(self.config.root_cert))
        if self.config.envoy_admin:  # the control plane reads Envoy's loopback admin through this agent
            from xds.agent.adminrelay import AdminRelayClient

            relay = AdminRelayClient(self._channel, self.credential, self.proxy_id, self.config.envoy_admin)
            self._admin_relay = asyncio.create_task(relay.run(), name="admin-relay")
        log.info("agent for %s ready: xDS %s, SDS %s", self.proxy_id, self.xds_socket, self.sds_socket)

    def _share_with_group(self, path: Path, mode: int) -> None:
        """The socket group (Envoy's) may traverse the folder and connect; it cannot list or read files."""
        if self.config.socket_group is None:
            return
        try:
            os.chown(path, -1, self.config.socket_group)  # the agent must be a member of that group
        except PermissionError:
            raise PermissionError(
                f"socket group {self.config.socket_group}: cannot give {path} to it (run the agent with "
                "that group among its groups, e.g. compose group_add)"
            ) from None
        os.chmod(path, mode)

    async def _first_certificate(self, within_s: float) -> WorkloadCert:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            try:
                return await self._certs.fetch()
            except CertificateError as exc:
                if loop.time() >= deadline or "UNAVAILABLE" not in str(exc):
                    raise
                await asyncio.sleep(0.2)

    async def _publish(self, cert: WorkloadCert) -> None:
        cert = self._with_file_roots(cert)
        self.cert = cert
        self.rotations += 1
        if self._sds is not None:
            self._sds.publish(cert)
        if self.config.cert_dir is not None:
            await asyncio.to_thread(write_cert_files, self.config.cert_dir, cert)

    async def _follow_root_file(self, path: Path) -> None:
        """Root rotation: when the trust bundle file changes (old + new roots during the overlap), Envoy's
        ROOTCA gets it at once with the same certificate, so a peer signed under the new root is trusted
        before this workload's own certificate rotates."""
        interval = reload_interval()
        self._file_roots = _roots(await asyncio.to_thread(_read_or_none, path))
        while True:
            await asyncio.sleep(interval)
            roots = _roots(await asyncio.to_thread(_read_or_none, path))
            if not roots or roots == self._file_roots:
                continue  # missing, mid-copy or unchanged: keep what Envoy has
            self._file_roots = roots
            if self.cert is not None:
                await self._publish(self.cert)
                log.warning("trust bundle %s changed: it holds %d root(s)", path, len(roots))

    def _with_file_roots(self, cert: WorkloadCert) -> WorkloadCert:
        """ROOTCA = the CA's bundle plus any root of the agent's root file it lacks (a CSR answered before
        the control plane re-read its files must not take the new root away again)."""
        held = _roots(cert.root_pem)
        missing = [r for r in self._file_roots if r not in held]
        if not missing:
            return cert
        return dataclasses.replace(cert, root_pem=cert.root_pem.rstrip(b"\n") + b"\n" + b"".join(missing))

    async def stop(self) -> None:
        for task in (self._rotation, self._root_watch, self._admin_relay):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for server in (self._xds, self._sds):
            if server is not None:
                await server.stop()
        await self._channel.close()


def _check_root_file(path: Path) -> None:
    """ValueError naming the file when it holds no PEM certificate."""
    try:
        bundle = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"--root-cert {path}: {exc.strerror or exc}") from None
    if not _roots(bundle):
        raise ValueError(f"--root-cert {path}: no PEM certificate in it (the mesh root, ca/root-cert.pem)")


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _roots(bundle: bytes | None) -> list[bytes]:
    """Each certificate of a PEM bundle (normalised), [] for a missing or unreadable file."""
    try:
        certs = x509.load_pem_x509_certificates(bundle) if bundle else []
    except ValueError:
        return []
    return [c.public_bytes(serialization.Encoding.PEM) for c in certs]


async def run_agent(config: AgentConfig, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, also while the first certificate is still awaited (a control plane not
    reachable yet); the servers shut down however it ends."""
    agent = Agent(config)
    starting = asyncio.ensure_future(agent.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # CertificateError, OSError: the caller says why
            print(f"mecha agent ready: {agent.proxy_id}  xDS unix:{agent.xds_socket}  SDS unix:"
                  f"{agent.sds_socket}", flush=True)  # fmt: skip
            await stopping
    finally:
        for task in (starting, stopping):
            task.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
        await agent.stop()
