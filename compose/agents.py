"""Workload identity in the packaged deployments: a `mecha agent` beside every Envoy, and the credentials
issued at deploy time (issue #11).

- A one-shot `credentials` service (root, after the control plane is healthy: its signing key and mesh root
  exist) runs `mecha credential issue` per proxy into that proxy's own credential volume: credential.jwt and
  root-cert.pem, 0600, owned by the agent's uid. It also hands each proxy's socket volume to the agent's uid
  and Envoy's group.
- The agent runs inside the capability service (its --agent-* flags) where one runs, else as a standalone
  `mecha agent` container (the ingress gateway) in its Envoy's network namespace. It serves xds.sock and
  sds.sock in a folder 0710 with sockets 0660 for Envoy's group (uid/gid 101 in the Envoy image), so Envoy
  connects and nothing else does: no other container mounts the volume, and the credential volume is mounted
  by the agent alone.
- Envoy's bootstrap points at those sockets only: it holds no credential, and no key crosses the network.
- Envoy's admin stays on loopback; the agent beside it relays read-only admin GETs for the control plane's
  `mecha proxy-config` (--envoy-admin / --agent-envoy-admin: the admin relay).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import topology as t

from xds.agent.bootstrap import through_agent
from xds.agent.launch import claims_for

AGENT_UID = 10001  # user `mecha` of the Mecha image (Dockerfile)
ENVOY_GID = 101  # group `envoy` of the Envoy image (official and stand-in)
CREDENTIAL_DIR = "/var/lib/mecha-credential"  # the proxy's credential volume, in the agent's container
AGENT_DIR = "/var/lib/mecha-agent"  # the proxy's socket volume, in the agent's and Envoy's containers
SOCKET_DIR = f"{AGENT_DIR}/sockets"  # made by the agent (0710, Envoy's group)
CREDENTIAL_FILE = f"{CREDENTIAL_DIR}/credential.jwt"
ROOT_FILE = f"{CREDENTIAL_DIR}/root-cert.pem"
STATE_DIR = "/var/lib/mecha"
SERVICE = "credentials"


def credential_volume(proxy_id: str) -> str:
    return f"credential-{proxy_id}"


def socket_volume(proxy_id: str) -> str:
    return f"agent-{proxy_id}"


def bootstrap(rendered: str) -> str:
    """A rendered bootstrap with its xDS (and SDS) cluster on the agent's sockets."""
    return through_agent(rendered, Path(SOCKET_DIR))


def issue_argv(proxy_id: str, metadata: dict[str, Any], out: str) -> list[str]:
    """`mecha credential issue` for what the proxy's node metadata claims (and nothing more)."""
    claims = claims_for(proxy_id, metadata)
    argv = ["mecha", "credential", "issue", "--state-dir", STATE_DIR, "--proxy-id", proxy_id,
            "--namespace", claims["namespace"], "--mode", claims["mode"], "-o", out]  # fmt: skip
    for account in claims["service_accounts"]:
        argv += ["--service-account", account]
    for key, values in sorted(claims["labels"].items()):
        for value in values:
            argv += ["--label", f"{key}={value}"]
    if claims.get("workload_group"):  # a scalable replica: its group, any address of the compose network,
        # node ids <proxy id>.<instance> (every replica shares this credential)
        argv += ["--workload-group", claims["workload_group"], "--address", t.COMPOSE_SUBNET, "--instances"]
    return argv


def scalable(metadata: dict[str, Any]) -> bool:
    """A replica that auto-registers runs as one container (xds/runner/pod.py): no socket volume."""
    return bool(metadata.get("workload_group"))


def _issue_script(proxies: dict[str, dict[str, Any]]) -> str:
    lines = ["set -eu"]
    for proxy_id, metadata in proxies.items():
        creds, sockets = f"/credentials/{proxy_id}", f"/agents/{proxy_id}"
        lines += [
            shlex.join(issue_argv(proxy_id, metadata, f"{creds}/credential.jwt")),
            f"cp {STATE_DIR}/ca/root-cert.pem {creds}/root-cert.pem",
            f"chown -R {AGENT_UID}:{AGENT_UID} {creds} && chmod 0700 {creds} && chmod 0600 {creds}/*",
        ]
        if not scalable(metadata):
            lines.append(f"chown {AGENT_UID}:{ENVOY_GID} {sockets} && chmod 0750 {sockets}")
    return "\n".join(lines) + "\n"


def credentials_service(
    proxies: dict[str, dict[str, Any]], image: str, state_volume: str, after: dict[str, Any]
) -> dict[str, Any]:
    """The one-shot service that issues every proxy's credential (proxy id -> its node metadata)."""
    volumes = [f"{state_volume}:{STATE_DIR}"]
    for proxy_id, metadata in proxies.items():
        volumes.append(f"{credential_volume(proxy_id)}:/credentials/{proxy_id}")
        if not scalable(metadata):
            volumes.append(f"{socket_volume(proxy_id)}:/agents/{proxy_id}")
    return {
        "image": image,
        "user": "0",  # reads the control plane's signing key, gives each volume to the agent's uid
        "command": ["sh", "-c", _issue_script(proxies)],
        "volumes": volumes,
        "depends_on": after,
        "network_mode": "none",  # it signs locally: no network needed
        "restart": "no",  # one-shot: the others wait for it to complete
    }


def agent_volumes(proxy_id: str) -> list[str]:
    return [f"{credential_volume(proxy_id)}:{CREDENTIAL_DIR}:ro", f"{socket_volume(proxy_id)}:{AGENT_DIR}"]


def envoy_volume(proxy_id: str) -> str:
    return f"{socket_volume(proxy_id)}:{AGENT_DIR}"


def embedded_agent_args(control_plane: str, envoy_admin: str) -> list[str]:
    """The capability service's --agent-* flags. envoy_admin: the loopback admin of the Envoy in its network
    namespace, which the control plane's proxy-config reads through the agent (the admin relay)."""
    return ["--agent-credential", CREDENTIAL_FILE, "--agent-control-plane", control_plane,
            "--agent-root-cert", ROOT_FILE, "--agent-socket-dir", SOCKET_DIR,
            "--agent-socket-group", str(ENVOY_GID), "--agent-envoy-admin", envoy_admin]  # fmt: skip


def standalone_agent(
    proxy_id: str, image: str, control_plane: str, netns: str, envoy_admin: str
) -> dict[str, Any]:
    """`mecha agent` in its own container (a gateway has no capability service), in the network namespace of
    its Envoy (netns: the compose service owning it), whose loopback admin it relays to the control plane."""
    command = ["mecha", "agent", "--credential", CREDENTIAL_FILE, "--control-plane", control_plane,
               "--root-cert", ROOT_FILE, "--socket-dir", SOCKET_DIR,
               "--socket-group", str(ENVOY_GID), "--envoy-admin", envoy_admin]  # fmt: skip
    return {
        "image": image,
        "command": command,
        "group_add": [str(ENVOY_GID)],
        "volumes": agent_volumes(proxy_id),
        "healthcheck": {
            "test": ["CMD-SHELL", f"test -S {SOCKET_DIR}/xds.sock && test -S {SOCKET_DIR}/sds.sock"],
            "interval": "2s",
            "retries": 30,
        },
        "network_mode": f"service:{netns}",
        "depends_on": {
            netns: {"condition": "service_started"},  # its Envoy gets config through this agent
            SERVICE: {"condition": "service_completed_successfully"},
        },
    }


def control_plane_address(hosts: list[str] | None = None) -> str:
    return ",".join(f"{h}:{t.XDS_PORT}" for h in (hosts or [t.CONTROL_PLANE_HOST]))
