"""What a runner (`mecha up`, tests) needs to put an agent beside an Envoy: the credential its node metadata
calls for, the agent's command line, and the bootstrap that points Envoy at the agent's sockets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xds.identity.credential import CredentialIssuer
from xds.statedir import ensure_private_dir, write_private_file

AGENTS_FOLDER = "agents"  # <state dir>/agents/<proxy id>/: credential (0600) and the sockets (0700 folder)


def claims_for(proxy_id: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Namespace, service accounts, labels and mode a proxy with this node metadata legitimately claims
    (service account: each app's `app` label, else its name, as the translator derives SPIFFE ids)."""
    apps = metadata.get("apps") or []
    labels: dict[str, set[str]] = {}
    for source in [metadata.get("labels") or {}, *[a.get("labels") or {} for a in apps]]:
        for key, value in source.items():
            labels.setdefault(str(key), set()).add(str(value))
    accounts = [str((a.get("labels") or {}).get("app") or a["name"]) for a in apps]
    if not accounts:
        accounts = [str((metadata.get("labels") or {}).get("app") or proxy_id)]
    claims: dict[str, Any] = {
        "namespace": str(metadata.get("namespace") or "default"),
        "service_accounts": list(dict.fromkeys(accounts)),
        "labels": {k: sorted(v) for k, v in labels.items()},
        "mode": str(metadata.get("mode") or "sidecar"),
    }
    if metadata.get("workload_group"):  # auto-registration: that group, at exactly the node's address
        claims["workload_group"] = str(metadata["workload_group"])
        claims["addresses"] = [str(metadata.get("address") or "127.0.0.1")]
    return claims


def issue_for(state_dir: Path, proxy_id: str, metadata: Mapping[str, Any], ttl_s: float = 30 * 86400) -> Path:
    """Sign the proxy's credential with the state folder's key; written 0600 beside its agent's sockets."""
    token, _ = CredentialIssuer.load_or_create(state_dir).issue(
        proxy_id, ttl_s=ttl_s, **claims_for(proxy_id, metadata)
    )
    ensure_private_dir(state_dir / AGENTS_FOLDER)  # mkdir(parents=True) would leave it 0755
    folder = ensure_private_dir(state_dir / AGENTS_FOLDER / proxy_id)
    return write_private_file(folder / "credential.jwt", token + "\n")


def agent_argv(
    credential: Path,
    control_plane: str,
    root_cert: Path,
    socket_dir: Path,
    trust_domain: str = "cluster.local",
    envoy_admin: str | None = None,
) -> list[str]:
    """A standalone agent (`python -m xds.agent`, the flags of `mecha agent`). envoy_admin: the loopback admin
    of the Envoy beside it, read by proxy-config through the agent."""
    from xds.agent.cli import argv_for
    from xds.agent.config import AgentConfig

    return argv_for(AgentConfig(credential, control_plane, socket_dir, root_cert, trust_domain,
                                envoy_admin=envoy_admin))  # fmt: skip


def embedded_agent_argv(
    credential: Path, control_plane: str, root_cert: Path, trust_domain: str, envoy_admin: str | None = None
) -> list[str]:
    """The capability service's --agent-* flags: the agent runs inside it (capabilities/identity_agent.py)."""
    return [
        "--agent-credential", str(credential), "--agent-control-plane", control_plane,
        "--agent-root-cert", str(root_cert), "--agent-socket-dir", str(credential.parent),
        "--agent-trust-domain", trust_domain,
        *(["--agent-envoy-admin", envoy_admin] if envoy_admin else []),
    ]  # fmt: skip


async def wait_for_sockets(child: Any, sockets: Path, deadline: float, what: str) -> None:
    """Until the agent in `child` (a xds.runner.procs.Child) listens on both sockets; RuntimeError names
    the child's log."""
    import asyncio
    import time

    from xds.agent.agent import SDS_SOCKET, XDS_SOCKET

    while not ((sockets / XDS_SOCKET).exists() and (sockets / SDS_SOCKET).exists()):
        if child.exited is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start; log {child.log}:\n{child.log_tail()}")
        await asyncio.sleep(0.01)  # Envoy starts after this: 50 ms steps cost ~25 ms of sidecar start


async def agent_bootstrap(bootstrap: Path, sockets: Path) -> Path:
    """The bootstrap rewritten to reach only the agent's sockets, beside it as <name>.agent.yaml (0600)."""
    import asyncio

    from xds.agent.bootstrap import through_agent

    out = bootstrap.with_name(f"{bootstrap.stem}.agent.yaml")
    rendered = await asyncio.to_thread(bootstrap.read_text)
    write_private_file(out, through_agent(rendered, sockets))
    return out


async def start_beside(
    sup: Any, logs: Path, state_dir: Path, proxy_id: str, metadata: Mapping[str, Any], xds_port: int,
    bootstrap: Path, deadline: float, envoy_admin: str | None = None,
) -> Path:  # fmt: skip
    """Issue the proxy's credential, start its standalone agent (a supervised child) and wait for its
    sockets; returns the bootstrap rewritten to use them. sup/Child: xds.runner.procs (kept out of this
    module's imports)."""
    from xds.runner.procs import Child

    credential = issue_for(state_dir, proxy_id, metadata)
    sockets = credential.parent
    root = state_dir / "ca" / "root-cert.pem"
    argv = agent_argv(credential, f"127.0.0.1:{xds_port}", root, sockets, envoy_admin=envoy_admin)
    child = await sup.start(Child(f"agent-{proxy_id}", "agent", argv, logs / f"agent-{proxy_id}.log"))
    await wait_for_sockets(child, sockets, deadline, f"agent of {proxy_id}")
    return await agent_bootstrap(bootstrap, sockets)
