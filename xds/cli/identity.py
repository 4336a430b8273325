"""`mecha credential issue|revoke` and `mecha agent`: workload credentials and the agent beside each Envoy."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from xds.cli.client import Client
from xds.statedir import default_state_dir, write_private_file


class IdentityUsageError(ValueError):
    """Bad arguments; main prints the message and exits 2."""


def add_parsers(
    sub: argparse._SubParsersAction, add_server: Callable[[argparse.ArgumentParser], None]
) -> None:
    cred = sub.add_parser("credential", help="issue or revoke workload credentials (xDS + CA access)")
    csub = cred.add_subparsers(dest="credential_command", required=True, metavar="ACTION")
    p = csub.add_parser("issue", help="sign a credential with the state folder's key (0600 file)")
    p.add_argument("--proxy-id", required=True, help="the proxy's node.id")
    p.add_argument("--namespace", default="default", help="the workload's namespace")
    p.add_argument("--service-account", action="append", default=[], help="repeatable; default: --proxy-id")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE the proxy may claim (repeatable)")
    p.add_argument(
        "--mode", choices=["sidecar", "node", "gateway", "proxyless"], default="sidecar", help="proxy mode"
    )
    p.add_argument("--workload-group", default="", help="WorkloadGroup the proxy may auto-register in")
    p.add_argument(
        "--address", action="append", default=[], help="IP/CIDR its endpoint may register (repeatable)"
    )
    p.add_argument(
        "--instances",
        action="store_true",
        help="shared by scaled replicas: node ids <proxy-id>.<instance> too (the agent adds its host name)",
    )
    p.add_argument("--ttl", type=float, default=365 * 86400, help="seconds (default one year)")
    p.add_argument("--state-dir", default=None, help="where the signing key is (default $MECHA_STATE_DIR)")
    p.add_argument("-o", "--output", required=True, help="credential file (written 0600)")
    p = csub.add_parser("revoke", help="revoke a credential (its open streams close, its CSRs are refused)")
    p.add_argument("jti", nargs="?", default="", help="the credential id (printed by `issue`)")
    p.add_argument("--proxy-id", default="", help="every credential issued so far to this proxy")
    add_server(p)

    p = sub.add_parser("agent", help="hold a proxy's credential and key: SDS + xDS for Envoy on Unix sockets")
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


def cmd_credential(args: argparse.Namespace) -> int:
    if args.credential_command == "issue":
        return _issue(args)
    if bool(args.jti) == bool(args.proxy_id):
        raise IdentityUsageError("give a credential id or --proxy-id (one of them)")
    body = {"jti": args.jti} if args.jti else {"proxy_id": args.proxy_id}
    outcome = Client(args.server, getattr(args, "token", None)).post("/api/v1/credentials/revoke", body)
    print(f"revoked {outcome.get('revoked')}: {outcome.get('closed_streams', 0)} open streams closed")
    return 0


def _issue(args: argparse.Namespace) -> int:
    from xds.identity.credential import CredentialError, CredentialIssuer, parse_labels

    state = Path(args.state_dir) if args.state_dir else default_state_dir()
    try:
        token, cred = CredentialIssuer.load_or_create(state).issue(
            args.proxy_id,
            args.namespace,
            args.service_account or [args.proxy_id],
            parse_labels(args.label),
            args.mode,
            args.ttl,
            workload_group=args.workload_group,
            addresses=args.address,
            instances=args.instances,
        )
    except CredentialError as exc:
        raise IdentityUsageError(str(exc)) from None
    write_private_file(Path(args.output), token + "\n")
    print(json.dumps({"jti": cred.jti, "proxy_id": cred.proxy_id, "expires_at": cred.expires_at,
                      "file": args.output}))  # fmt: skip
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from xds.agent import AgentConfig, run_agent
    from xds.agent.certs import CertificateError
    from xds.identity.credential import CredentialError

    root = None
    if not args.insecure:
        root = Path(args.root_cert) if args.root_cert else default_state_dir() / "ca" / "root-cert.pem"
        if not root.is_file():
            raise IdentityUsageError(f"--root-cert {root}: no such file (the mesh root, ca/root-cert.pem)")
    config = AgentConfig(
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

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(config, stop)

    try:
        asyncio.run(main())
    except (CredentialError, CertificateError, ValueError, OSError) as exc:
        print(f"mecha agent: {exc}", file=sys.stderr)
        return 1
    return 0
