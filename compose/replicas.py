"""The multi-replica variant of the sidecar topology (docker-compose.replicas.yaml): two control-plane
replicas sharing one config store in the compose PostgreSQL (`mecha serve --store`), and every Envoy's agent
dialing both (`--control-plane a:15012,b:15012`: one gRPC channel, a dead replica skipped). The bootstraps
in bootstrap/replicas/ are rendered with both replicas, then pointed at the agent's sockets like the others.

Both replicas also answer to the name `control-plane` (a network alias), so the capability services reach
whichever is up. They share the state volume (API tokens; the config itself is in PostgreSQL); the second
starts once the first is healthy, so the tokens are created once.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import agents
import topology as t

from xds.bootstrap import BootstrapParams, render

REPLICAS = ("control-plane-a", "control-plane-b")  # no fixed addresses: reached by name (alias control-plane)
STORE = "postgresql://postgres@postgres:5432/mecha?schema=mecha_config&sslmode=disable"
COMPOSE_FILE = "docker-compose.replicas.yaml"
XDS_ADDRESSES = tuple((name, t.XDS_PORT) for name in REPLICAS)
AGENT_CONTROL_PLANE = agents.control_plane_address(list(REPLICAS))


def sidecar_bootstrap(w: t.Workload) -> str:
    params = BootstrapParams(
        proxy_id=w.name,
        cluster=w.service,
        xds_port=t.XDS_PORT,
        admin_host=t.ADMIN_HOST,
        admin_port=t.SIDECAR.admin,
        metadata=t.scalable_sidecar_metadata(w),
        xds_addresses=XDS_ADDRESSES,
    )
    return agents.bootstrap(render(params))


def gateway_bootstrap() -> str:
    params = BootstrapParams(
        proxy_id=t.GATEWAY_ID,
        cluster=t.GATEWAY_ID,
        xds_port=t.XDS_PORT,
        admin_host=t.ADMIN_HOST,
        admin_port=t.GATEWAY_ADMIN_PORT,
        metadata=t.gateway_metadata(),
        xds_addresses=XDS_ADDRESSES,
    )
    return agents.bootstrap(render(params))


def _replica(base: dict[str, Any], index: int, name: str, render_module: Any) -> dict[str, Any]:
    service = copy.deepcopy(base)
    command: list[str] = service["command"]
    command[command.index("--state-dir") : command.index("--state-dir")] = ["--store", STORE]
    service["networks"] = {"mesh": {"aliases": [t.CONTROL_PLANE_HOST]}}  # any address: replicas scale
    service["environment"] = {**base["environment"], "MECHA_ALLOWED_HOSTS": f"{t.CONTROL_PLANE_HOST},{name}"}
    # each replica's API on its own host port (15010, 15110)
    service["ports"] = [render_module.published(t.API_PORT + 100 * index, t.API_PORT)]
    first = REPLICAS[0]
    after = ["postgres"] if name == first else ["postgres", first]
    service["depends_on"] = render_module.healthy(*after)
    return service


def _replica_bootstrap(volume: str) -> str:
    volume = volume.replace("./bootstrap/gateway/sidecar.yaml", "./bootstrap/replicas/gateway.yaml")
    return volume.replace("./bootstrap/sidecar/", "./bootstrap/replicas/")


def compose(render_module: Any) -> dict[str, Any]:
    doc = render_module.sidecar_compose()
    services: dict[str, Any] = doc["services"]
    base = services.pop("control-plane")
    replicas = {name: _replica(base, i, name, render_module) for i, name in enumerate(REPLICAS)}
    for service in services.values():
        depends = service.get("depends_on") or {}
        if "control-plane" in depends:
            condition = depends.pop("control-plane")
            depends.update({name: dict(condition) for name in REPLICAS})
        if "volumes" in service:  # the Envoys mount the bootstraps rendered for replicas
            service["volumes"] = [_replica_bootstrap(v) for v in service["volumes"]]
        command = service.get("command")
        if isinstance(command, list):  # every agent (embedded or standalone) dials both replicas
            single = agents.control_plane_address()
            # (a replica's launcher holds the capability service's command line as one argument)
            service["command"] = [arg.replace(single, AGENT_CONTROL_PLANE) for arg in command]
    doc["services"] = render_module.restarting({**replicas, **services})
    return doc


def rendered_files(render_module: Any) -> dict[Path, str]:
    files = {
        Path(COMPOSE_FILE): render_module.COMPOSE_HEADER.format(name=COMPOSE_FILE)
        + render_module.dump(compose(render_module)),
        Path("bootstrap/replicas/gateway.yaml"): gateway_bootstrap(),
    }
    for w in t.WORKLOAD_LIST:
        files[Path(f"bootstrap/replicas/{w.name}.yaml")] = sidecar_bootstrap(w)
    return files
