"""`mecha run --app-id NAME --app-port PORT -- CMD...`: your app in the running mesh, as `dapr run` does it.

This module only parses and plans (light imports: every `mecha` command imports it); the processes are
started by xds/cli/run_sidecar.py. The plan: free ports for the sidecar, the running `mecha up` found from
its state folder (.mecha/up.json), and the mesh documents that make the app reachable by its app id.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds.cli.apps import RUN_FOLDER, STATE_HELP, UP_FILE, AppsError, _alive
from xds.statedir import find_state_dir

SERVICE_PORT = 9080  # = xds/demo/config.py SERVICE_PORT: the mesh-wide service port of the demo's apps
PROTOCOLS = {"http": "HTTP", "grpc": "GRPC"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run your app with its sidecar (Envoy + capability service) in the running mesh (dapr run)",
    )
    p.add_argument("--app-id", required=True, help="the app id (its name in the mesh and for service invoke)")
    p.add_argument("--app-port", type=int, required=True, help="the port your app listens on (APP_PORT)")
    p.add_argument("--app-protocol", choices=sorted(PROTOCOLS), default="http", help="what your app speaks")
    p.add_argument(
        "--resources-path",
        action="append",
        default=[],
        help="folder of Dapr Component/Subscription YAML for this app (repeatable)",
    )
    p.add_argument("--dapr-http-port", type=int, default=0, help="DAPR_HTTP_PORT (0: a free port)")
    p.add_argument("--dapr-grpc-port", type=int, default=0, help="DAPR_GRPC_PORT (0: a free port)")
    p.add_argument("--state-dir", default=None, help=STATE_HELP)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD...", help="your app's command line")


class RunError(AppsError):
    """`mecha run` cannot start: the message names the option, the file or the process and why."""


@dataclass(frozen=True)
class MeshInfo:
    """The running `mecha up` this app joins."""

    state_dir: Path
    api: str
    xds: str  # host:port

    @staticmethod
    def find(given: str | None) -> MeshInfo:
        folder = Path(given) if given else find_state_dir()
        up_file = (folder / UP_FILE) if folder else None
        if up_file is None or not up_file.exists():
            where = folder or Path.cwd()
            raise RunError(f"no running mesh found from {where} (no {UP_FILE}); start one with `mecha up`")
        try:
            info = json.loads(up_file.read_text())
            pid, api, xds = int(info.get("pid") or 0), str(info["api"]), str(info["xds"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunError(f"{up_file}: unreadable ({exc}); restart the mesh with `mecha up`") from None
        if not _alive(pid):
            raise RunError(f"{up_file}: the `mecha up` it names (pid {pid}) is gone; start it again")
        return MeshInfo(state_dir=folder.resolve(), api=api.rstrip("/"), xds=xds)  # type: ignore[union-attr]


@dataclass(frozen=True)
class SidecarPorts:
    inbound: int  # the app's inbound listener on its Envoy (what the WorkloadEntry points at)
    outbound: int  # the app's outbound listener (mesh entry for plain HTTP calls)
    admin: int
    dapr_http: int  # Envoy's Dapr HTTP listener = DAPR_HTTP_PORT
    dapr_grpc: int  # Envoy's Dapr gRPC listener = DAPR_GRPC_PORT
    capabilities_http: int  # the capability service behind them
    capabilities_grpc: int


def free_ports(count: int, avoid: set[int]) -> list[int]:
    """Ports the kernel has free now, distinct and not in `avoid` (all bound at once, so no repeats)."""
    held: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
            port = s.getsockname()[1]
            if port not in avoid:
                ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


def pick_ports(app_port: int, dapr_http: int = 0, dapr_grpc: int = 0) -> SidecarPorts:
    chosen = free_ports(7, {app_port, dapr_http, dapr_grpc})
    return SidecarPorts(
        inbound=chosen[0],
        outbound=chosen[1],
        admin=chosen[2],
        dapr_http=dapr_http or chosen[3],
        dapr_grpc=dapr_grpc or chosen[4],
        capabilities_http=chosen[5],
        capabilities_grpc=chosen[6],
    )


@dataclass(frozen=True)
class RunPlan:
    app_id: str
    app_port: int
    protocol: str  # http | grpc
    argv: list[str]
    mesh: MeshInfo
    ports: SidecarPorts
    resources_paths: list[Path] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """<state>/run/<app id>/: credential, agent sockets, bootstrap, logs (0700)."""
        return self.mesh.state_dir / RUN_FOLDER / self.app_id

    @property
    def record_file(self) -> Path:
        """<state>/run/<app id>.json: what `mecha list` shows while the app runs (0600)."""
        return self.mesh.state_dir / RUN_FOLDER / f"{self.app_id}.json"

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.app_id}

    def proxy_metadata(self) -> dict[str, Any]:
        """node.metadata.mecha of the app's Envoy (layout: xds/proxy.py), one sidecar on loopback."""
        p = self.ports
        meta: dict[str, Any] = {
            "mode": "sidecar",
            "namespace": "default",
            "address": "127.0.0.1",
            "bind": "127.0.0.1",
            "admin": f"127.0.0.1:{p.admin}",
            "outbound_port": p.outbound,
            "dapr_http_port": p.dapr_http,
            "dapr_grpc_port": p.dapr_grpc,
            "capabilities_http": f"127.0.0.1:{p.capabilities_http}",
            "capabilities_grpc": f"127.0.0.1:{p.capabilities_grpc}",
            "labels": self.labels,
            "apps": [
                {
                    "name": self.app_id,
                    "namespace": "default",
                    "app_port": self.app_port,
                    "inbound_port": p.inbound,
                    "labels": self.labels,
                    "app_protocol": self.protocol,
                }
            ],
        }
        for env, key in (("DAPR_API_TOKEN", "dapr_api_token"), ("APP_API_TOKEN", "app_api_token")):
            if os.environ.get(env):  # Envoy checks/adds them on invoke routes, as daprd does
                meta[key] = os.environ[env]
        return meta

    def mesh_documents(self) -> list[dict[str, Any]]:
        """The ServiceEntry (host = app id, the demo's service port) and the WorkloadEntry at the app's
        inbound listener: other apps reach this one through the mesh by its app id."""
        net = "networking.istio.io/v1"
        meta = {"name": self.app_id, "namespace": "default"}
        port_name = self.protocol
        return [
            {
                "apiVersion": net,
                "kind": "ServiceEntry",
                "metadata": meta,
                "spec": {
                    "hosts": [self.app_id],
                    "location": "MESH_INTERNAL",
                    "resolution": "STATIC",
                    "ports": [
                        {"number": SERVICE_PORT, "name": port_name, "protocol": PROTOCOLS[self.protocol]}
                    ],
                    "workloadSelector": {"labels": self.labels},
                },
            },
            {
                "apiVersion": net,
                "kind": "WorkloadEntry",
                "metadata": meta,
                "spec": {
                    "address": "127.0.0.1",
                    "ports": {port_name: self.ports.inbound},
                    "labels": self.labels,
                },
            },
        ]

    def app_env(self) -> dict[str, str]:
        """What the Dapr SDKs read, as `dapr run` sets it."""
        return {
            "APP_ID": self.app_id,
            "APP_PORT": str(self.app_port),
            "APP_PROTOCOL": self.protocol,
            "DAPR_HTTP_PORT": str(self.ports.dapr_http),
            "DAPR_GRPC_PORT": str(self.ports.dapr_grpc),
        }

    def record(self, pid: int, app_pid: int | None, logs: dict[str, str]) -> dict[str, Any]:
        """The row `mecha list` shows (xds/cli/apps.py running_apps); pid is `mecha run`'s own."""
        return {
            "name": self.app_id,
            "app_id": self.app_id,
            "app": f"http://127.0.0.1:{self.app_port}",
            "dapr_http": f"http://127.0.0.1:{self.ports.dapr_http}",
            "dapr_grpc": f"127.0.0.1:{self.ports.dapr_grpc}",
            "pid": pid,
            "app_pid": app_pid,
            "logs": logs,
        }


def check_app_id(app_id: str) -> str:
    """One DNS label (it becomes a service host, a proxy id and a file name)."""
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", app_id):
        raise RunError(
            f"--app-id {app_id!r}: must be a DNS label (lower-case letters, digits and '-', at most 63)"
        )
    return app_id


def plan_from_args(args: argparse.Namespace) -> RunPlan:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise RunError("no command to run: give your app's command line after `--`")
    app_id = check_app_id(args.app_id)
    for label, port in (("--app-port", args.app_port), ("--dapr-http-port", args.dapr_http_port),
                        ("--dapr-grpc-port", args.dapr_grpc_port)):  # fmt: skip
        if not 0 <= port <= 65535 or (label == "--app-port" and port == 0):
            raise RunError(f"{label} {port}: not a TCP port (1-65535)")
    resources = [Path(r).resolve() for r in args.resources_path]
    for given, folder in zip(args.resources_path, resources, strict=True):
        if not folder.is_dir():
            raise RunError(f"--resources-path {given}: no such folder")
    mesh = MeshInfo.find(args.state_dir)
    record = mesh.state_dir / RUN_FOLDER / f"{app_id}.json"
    if record.exists():
        try:
            pid = int(json.loads(record.read_text()).get("pid") or 0)
        except (OSError, ValueError, TypeError):
            pid = 0
        if _alive(pid):
            raise RunError(f"app {app_id!r} already runs here (`mecha run` pid {pid}); stop it first")
    ports = pick_ports(args.app_port, args.dapr_http_port, args.dapr_grpc_port)
    return RunPlan(app_id, args.app_port, args.app_protocol, argv, mesh, ports, resources)
