"""`mecha credential issue|revoke` and `mecha agent`: workload credentials and the agent beside each Envoy."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from xds.agent import cli as agent_cli
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
    agent_cli.add_arguments(p)


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
    try:
        config = agent_cli.config_from_args(args, default_state_dir() / "ca" / "root-cert.pem")
    except ValueError as exc:
        raise IdentityUsageError(str(exc)) from None
    return agent_cli.run(config, exit_with_stdin=args.exit_with_stdin)
