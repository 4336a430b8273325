"""The agent's command line, one definition for `mecha agent` (xds/cli/identity.py) and `python -m xds.agent`
(what the capability service and `mecha up` start: it imports no CLI, so the agent's sockets open ~0.1 s
sooner on a sidecar's start path than through `mecha`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from xds.agent.config import AgentConfig

# Hidden flag of a supervised child (the capability service's embedded agent): standard input is a pipe the
# parent holds, so the agent ends when its parent does, even on SIGKILL (nothing else would reap it).
EXIT_WITH_STDIN = "--exit-with-stdin"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--credential", required=True, help="credential file from `mecha credential issue`")
    p.add_argument("--control-plane", default="127.0.0.1:15012", help="host:port of the xDS/CA port")
    p.add_argument("--root-cert", default=None, help="mesh root PEM (default <state dir>/ca/root-cert.pem)")
    p.add_argument("--socket-dir", required=True, help="folder (made 0700) for xds.sock and sds.sock")
    p.add_argument("--cert-dir", default=None, help="also write cert-chain.pem, key.pem, root-cert.pem here")
    p.add_argument(
        "--socket-group",
        type=int,
        default=None,
        help="GID of Envoy's user in another container: sockets 0660 and folder 0710 for that group only",
    )
    p.add_argument(
        "--envoy-admin",
        default=None,
        metavar="HOST:PORT",
        help="the Envoy admin beside this agent (loopback, or unix:PATH): the control plane's proxy-config "
        "reads it through the agent's authenticated stream (only read-only GETs are relayed)",
    )
    p.add_argument("--trust-domain", default="cluster.local", help="SPIFFE trust domain of the mesh")
    p.add_argument("--cert-ttl", type=float, default=0, help="certificate lifetime to ask for (s)")
    p.add_argument("--insecure", action="store_true", help="plaintext (a control plane with --insecure-xds)")
    p.add_argument(EXIT_WITH_STDIN, action="store_true", help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace, default_root: Path | None) -> AgentConfig:
    """ValueError names the flag when the mesh root is missing."""
    root = None
    if not args.insecure:
        root = Path(args.root_cert) if args.root_cert else default_root
        if root is None or not root.is_file():
            raise ValueError(f"--root-cert {root}: no such file (the mesh root, ca/root-cert.pem)")
    return AgentConfig(
        credential_file=Path(args.credential),
        control_plane=args.control_plane,
        socket_dir=Path(args.socket_dir),
        root_cert=root,
        trust_domain=args.trust_domain,
        cert_ttl_s=args.cert_ttl,
        cert_dir=Path(args.cert_dir) if args.cert_dir else None,
        socket_group=args.socket_group,
        envoy_admin=args.envoy_admin,
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
