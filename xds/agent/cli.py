"""The agent's command line, one definition for `mecha agent` (xds/cli/identity.py) and `python -m xds.agent`
(what the capability service and `mecha up` start: it imports no CLI, so the agent's sockets open ~0.1 s
sooner on a sidecar's start path than through `mecha`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xds.agent.config import AgentConfig

if TYPE_CHECKING:
    import asyncio

# asyncio and the agent load in run(): the capability service declares these flags (prefix "agent-") and
# spawns its agent from them before its own imports, which must not wait for the agent's

# Hidden flag of a supervised child (the capability service's embedded agent): standard input is a pipe the
# parent holds, so the agent ends when its parent does, even on SIGKILL (nothing else would reap it).
EXIT_WITH_STDIN = "--exit-with-stdin"


def add_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup, prefix: str = "") -> None:
    """The agent's flags, declared here only. prefix "agent-": the capability service's --agent-* group,
    where --agent-credential turns the embedded agent on, so argparse requires nothing (config_from_args
    checks the rest once it is given)."""
    standalone = not prefix

    def flag(name: str, **kwargs: Any) -> None:
        p.add_argument(f"--{prefix}{name}", **kwargs)

    turns_on = "" if standalone else "; turns the embedded agent on"
    root_default = "default: the state folder's" if standalone else f"required unless --{prefix}insecure"
    flag("credential", required=standalone, metavar="FILE",
         help=f"workload credential file (`mecha credential issue`){turns_on}")  # fmt: skip
    flag("control-plane", default="127.0.0.1:15012", metavar="HOST:PORT",
         help="the control plane's xDS/CA port")  # fmt: skip
    flag("root-cert", default=None, metavar="FILE",
         help=f"mesh root PEM, the control plane's ca/root-cert.pem ({root_default})")  # fmt: skip
    flag("socket-dir", required=standalone, metavar="DIR",
         help="folder (made 0700) for xds.sock and sds.sock")  # fmt: skip
    flag("cert-dir", default=None, metavar="DIR",
         help="also write cert-chain.pem, key.pem, root-cert.pem here (proxyless gRPC)")  # fmt: skip
    flag("socket-group", type=int, default=None, metavar="GID",
         help="group of Envoy's user in another container: sockets 0660 and folder 0710 for that group "
         "only")  # fmt: skip
    flag("envoy-admin", default=None, metavar="HOST:PORT",
         help="the Envoy admin beside this agent (loopback, or unix:PATH): the control plane's proxy-config "
         "reads it through the agent's authenticated stream (only read-only GETs are relayed)")  # fmt: skip
    flag("trust-domain", default="cluster.local", help="SPIFFE trust domain of the mesh")
    flag("cert-ttl", type=float, default=0, metavar="SECONDS",
         help="certificate lifetime to ask for (0: the CA's)")  # fmt: skip
    flag("insecure", action="store_true", help="plaintext (only a control plane started with --insecure-xds)")
    if standalone:
        p.add_argument(EXIT_WITH_STDIN, action="store_true", help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace, default_root: Path | None, prefix: str = "") -> AgentConfig:
    """The flags add_arguments(prefix) declared; ValueError names the missing or wrong flag."""

    def value(name: str) -> Any:
        return getattr(args, (prefix + name).replace("-", "_"))

    with_credential = f" with --{prefix}credential" if prefix else ""
    if not value("socket-dir"):
        raise ValueError(f"--{prefix}socket-dir is required{with_credential}")
    root = None
    if not value("insecure"):
        root = Path(value("root-cert")) if value("root-cert") else default_root
        if root is None:
            raise ValueError(f"--{prefix}root-cert is required{with_credential} (or --{prefix}insecure)")
        if not root.is_file():
            raise ValueError(f"--{prefix}root-cert {root}: no such file (the mesh root, ca/root-cert.pem)")
    return AgentConfig(
        credential_file=Path(value("credential")),
        control_plane=value("control-plane"),
        socket_dir=Path(value("socket-dir")),
        root_cert=root,
        trust_domain=value("trust-domain"),
        cert_ttl_s=value("cert-ttl"),
        cert_dir=Path(value("cert-dir")) if value("cert-dir") else None,
        socket_group=value("socket-group"),
        envoy_admin=value("envoy-admin"),
    )


def argv_for(config: AgentConfig, exit_with_stdin: bool = False) -> list[str]:
    """`python -m xds.agent` with the flags that give back this config (sockets and xDS proxy always on)."""
    argv = [sys.executable, "-m", "xds.agent", "--credential", str(config.credential_file),
            "--control-plane", config.control_plane, "--socket-dir", str(config.socket_dir),
            "--trust-domain", config.trust_domain]  # fmt: skip
    if config.root_cert is None:
        argv.append("--insecure")
    else:
        argv += ["--root-cert", str(config.root_cert)]
    if config.cert_dir is not None:
        argv += ["--cert-dir", str(config.cert_dir)]
    if config.cert_ttl_s:
        argv += ["--cert-ttl", repr(config.cert_ttl_s)]
    if config.socket_group is not None:
        argv += ["--socket-group", str(config.socket_group)]
    if config.envoy_admin:
        argv += ["--envoy-admin", config.envoy_admin]
    if exit_with_stdin:
        argv.append(EXIT_WITH_STDIN)
    return argv


def run(config: AgentConfig, exit_with_stdin: bool = False) -> int:
    """Serve until SIGINT/SIGTERM (or standard input's end with exit_with_stdin); 1 with the reason when the
    credential, the first certificate or the sockets fail."""
    import asyncio
    import signal
    import threading

    from xds.agent.agent import run_agent
    from xds.agent.certs import CertificateError
    from xds.identity.credential import CredentialError

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if exit_with_stdin:
            lifeline = threading.Thread(target=_wait_for_eof, args=(loop, stop), name="lifeline", daemon=True)
            lifeline.start()
        await run_agent(config, stop)

    try:
        asyncio.run(main())
    except (CredentialError, CertificateError, ValueError, OSError) as exc:
        print(f"mecha agent: {exc}", file=sys.stderr)
        return 1
    return 0


def _wait_for_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    import os

    try:  # the raw descriptor: a buffered read holds a lock that interpreter shutdown would wait for
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    try:
        loop.call_soon_threadsafe(stop.set)
    except RuntimeError:  # the loop already closed
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds.agent", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from xds.statedir import default_state_dir

    try:
        config = config_from_args(args, default_state_dir() / "ca" / "root-cert.pem")
    except ValueError as exc:
        print(f"mecha agent: {exc}", file=sys.stderr)
        return 2
    return run(config, exit_with_stdin=args.exit_with_stdin)
