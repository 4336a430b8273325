"""`mecha bootstrap --agent-dir DIR`: the proxy's credential, issued by the control plane's API with the
operator token (POST /api/v1/credentials), written 0600 into DIR with the mesh root; the Envoy bootstrap
pointed at the agent's Unix sockets in DIR; and the `mecha agent` command line to run beside Envoy.

Issued through the API rather than signed here: the signing key stays in the control plane (replicas share
it, revocations live there), and `mecha bootstrap` works from any machine that has the operator token.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from xds.cli.apps import AppsError
from xds.cli.client import Client, default_server
from xds.cli.run import MeshInfo
from xds.controlplane.settings import DEFAULT_XDS_PORT
from xds.statedir import ensure_private_dir, write_private_file

CREDENTIAL_FILE = "credential.jwt"
ROOT_FILE = "root-cert.pem"
DEFAULT_XDS_HOST = "127.0.0.1"  # `mecha bootstrap` without --xds-host
AGENT_DIR_HELP = (
    "issue the proxy's credential through the control plane's API (operator token) into this folder "
    "(0700) and point Envoy at the agent's sockets there; prints the `mecha agent` command to run beside it"
)


def api_server(args: argparse.Namespace) -> str:
    """The API that issues the credential: --server, else the running `mecha up`'s (client.py)."""
    return (args.server or default_server()).rstrip("/")


def xds_address(args: argparse.Namespace) -> tuple[str, int]:
    """--xds-host / --xds-port, the documented default for each one not given."""
    host = DEFAULT_XDS_HOST if args.xds_host is None else args.xds_host
    return host, DEFAULT_XDS_PORT if args.xds_port is None else args.xds_port


def control_plane_address(args: argparse.Namespace) -> str:
    """What the agent dials: every --xds replica, else --xds-host/--xds-port when either is given, else the
    xDS address of the running `mecha up` whose API issues the credential (its up.json, read as `mecha run`
    reads it: so `mecha up --port-offset N` needs no --xds-port, as it needs no --server), else the
    defaults."""
    replicas = list(getattr(args, "xds", []) or [])
    if replicas:
        return ",".join(replicas)
    if args.xds_host is None and args.xds_port is None:
        try:
            mesh = MeshInfo.find(None)
        except AppsError:  # no running `mecha up` here: the defaults
            mesh = None
        if mesh is not None and mesh.api == api_server(args):
            return mesh.xds
    host, port = xds_address(args)
    return f"{host}:{port}"


def issue(args: argparse.Namespace, metadata: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """POST /api/v1/credentials for the claims this node's metadata makes; (credential, root) files."""
    from xds.agent.launch import claims_for

    claims = claims_for(args.id, metadata)
    body = {"proxy_id": args.id, **claims, "ttl_s": args.credential_ttl}
    answer = Client(api_server(args), args.token).post("/api/v1/credentials", body)
    ensure_private_dir(folder)
    credential = write_private_file(folder / CREDENTIAL_FILE, str(answer["token"]) + "\n")
    root = write_private_file(folder / ROOT_FILE, str(answer["root_cert"]))
    return credential, root


def agent_command(args: argparse.Namespace, credential: Path, root: Path, folder: Path) -> str:
    # --envoy-admin: the bootstrap's admin (loopback), which proxy-config reads through the agent
    argv = ["mecha", "agent", "--credential", str(credential), "--control-plane", control_plane_address(args),
            "--root-cert", str(root), "--socket-dir", str(folder),
            "--envoy-admin", f"127.0.0.1:{args.admin_port}"]  # fmt: skip
    return shlex.join(argv)


def agent_mode(args: argparse.Namespace, metadata: dict[str, Any], rendered: str) -> tuple[str, str]:
    """(bootstrap through the agent's sockets, the agent's command line)."""
    from xds.agent.bootstrap import through_agent

    folder = Path(args.agent_dir).absolute()
    credential, root = issue(args, metadata, folder)
    return through_agent(rendered, folder), agent_command(args, credential, root, folder)
