"""The workload's `mecha agent` inside the capability service (sidecar and node mode), on its own thread.

The agent (xds/agent/) holds the proxy's credential and key, serves SDS and proxies ADS for the Envoy beside
this service. It runs on a thread with its own event loop, so nothing a Dapr component does on the service's
loop (an exception, a blocking call, a hung backend) can stop certificate rotation; and nothing the agent
does can stop the Dapr API. Whatever ends the agent is logged and the agent starts again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # grpc and cryptography load only on the agent's thread
    from xds.agent.agent import Agent
    from xds.agent.config import AgentConfig

log = logging.getLogger("capabilities.agent")
RESTART_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("embedded mecha agent (the Envoy beside this service reaches the "
                                      "control plane through it)")  # fmt: skip
    group.add_argument("--agent-credential", metavar="FILE", help="workload credential (`mecha credential "
                       "issue`); turns the embedded agent on")  # fmt: skip
    group.add_argument("--agent-control-plane", default="127.0.0.1:15012", metavar="HOST:PORT",
                       help="the control plane's xDS/CA port")  # fmt: skip
    group.add_argument("--agent-root-cert", metavar="FILE", help="mesh root PEM (the control plane's ca/)")
    group.add_argument("--agent-socket-dir", metavar="DIR", help="folder (0700) for xds.sock and sds.sock")
    group.add_argument("--agent-cert-dir", metavar="DIR", help="also write cert-chain.pem, key.pem, "
                       "root-cert.pem here (proxyless gRPC)")  # fmt: skip
    group.add_argument("--agent-trust-domain", default="cluster.local")
    group.add_argument("--agent-socket-group", type=int, metavar="GID", help="Envoy's group in another "
                       "container: sockets 0660, folder 0710 for it")  # fmt: skip
    group.add_argument("--agent-envoy-admin", metavar="HOST:PORT", help="the Envoy admin beside this "
                       "service (loopback, or unix:PATH): the control plane's proxy-config reads it through "
                       "the agent")  # fmt: skip
    group.add_argument("--agent-insecure", action="store_true",
                       help="plaintext (only a control plane started with --insecure-xds)")  # fmt: skip


def config_from_args(args: argparse.Namespace) -> AgentConfig | None:
    """None when --agent-credential is not given; ValueError names the missing or wrong flag."""
    if not args.agent_credential:
        return None
    from xds.agent.config import AgentConfig

    if not args.agent_socket_dir:
        raise ValueError("--agent-socket-dir is required with --agent-credential")
    root = None
    if not args.agent_insecure:
        if not args.agent_root_cert:
            raise ValueError("--agent-root-cert is required with --agent-credential (or --agent-insecure)")
        root = Path(args.agent_root_cert)
        if not root.is_file():
            raise ValueError(f"--agent-root-cert {root}: no such file (the mesh root, ca/root-cert.pem)")
    return AgentConfig(
        credential_file=Path(args.agent_credential),
        control_plane=args.agent_control_plane,
        socket_dir=Path(args.agent_socket_dir),
        root_cert=root,
        trust_domain=args.agent_trust_domain,
        cert_dir=Path(args.agent_cert_dir) if args.agent_cert_dir else None,
        socket_group=getattr(args, "agent_socket_group", None),
        envoy_admin=getattr(args, "agent_envoy_admin", None),
    )


class EmbeddedAgent:
    """Runs an Agent on a daemon thread; restarts it whenever it ends until stop()."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.agent: Agent | None = None
        self.starts = 0
        self.ready = threading.Event()  # set once the first certificate is served on the sockets
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mecha-agent", daemon=True)

    @property
    def rotations(self) -> int:
        """Certificates published so far by the current agent (the first one counts)."""
        return self.agent.rotations if self.agent is not None else 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException:  # the thread's last line of defence: never let it die silently
            log.exception("embedded mecha agent thread ended")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        while not self._stop.is_set():
            try:
                await self._serve_once(self._stop)
            except Exception as exc:  # contained: log and start again
                log.error("embedded mecha agent stopped (%s: %s); starting again in %.0fs",
                          type(exc).__name__, exc, RESTART_S)  # fmt: skip
            if not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._stop.wait(), RESTART_S)
                except TimeoutError:
                    pass

    async def _serve_once(self, stop: asyncio.Event) -> None:
        from xds.agent.agent import Agent

        agent = Agent(self.config)
        self.agent = agent
        self.starts += 1
        try:
            await agent.start()
            self.ready.set()
            log.info("embedded mecha agent for %s ready (xDS %s, SDS %s)", agent.proxy_id, agent.xds_socket,
                     agent.sds_socket)  # fmt: skip
            stopping = asyncio.ensure_future(stop.wait())
            rotation = agent.rotation
            assert rotation is not None
            await asyncio.wait((stopping, rotation), return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if rotation.done() and not rotation.cancelled() and rotation.exception() is not None:
                raise RuntimeError(f"certificate rotation failed: {rotation.exception()!r}")
        finally:
            await agent.stop()
