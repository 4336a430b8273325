"""One scalable compose replica in one container: capability service (with the embedded agent), Envoy, app.

Compose joins containers to a network namespace with `network_mode: service:X`, which names one container of
X: a three-container "pod" cannot be scaled. A scalable service therefore runs its three processes here, each
as its own user so the #11 boundaries hold inside the container: the agent (capability service, uid 10001,
also in Envoy's group) alone reads the credential and serves the sockets (folder 0710, sockets 0660 for group
101), Envoy (uid/gid 101) reaches them, the app (uid 65534) reaches neither.

    python -m xds.runner.pod --agent-dir /var/lib/mecha-agent --admin 127.0.0.1:15000 \\
        --capabilities 'python -m capabilities ...' --envoy 'envoy -c ...' --app 'python -m xds.demo ...'

SIGTERM (compose stop, scale down, recreation): drain, wait, stop, as `mecha up` does (procs.stop_all): the
capability service reports DRAINING (callers stop sending) while Envoy drains its listeners; after
--drain-seconds Envoy and the app stop. Any process that exits ends the container (compose restarts it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xds.runner.procs import drain_listeners

AGENT_UID = 10001  # user `mecha` of the Mecha image
AGENT_HOME = "/opt/mecha"  # its home there
ENVOY_UID = 101  # Envoy's user and group (as in the Envoy image): the agent shares its sockets with gid 101
APP_UID = 65534  # nobody: the app reaches neither the credential nor the sockets


@dataclass(frozen=True)
class Role:
    name: str
    argv: list[str]
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/tmp"  # not root's: libraries look for their files there (~/.postgresql)


async def _spawn(role: Role, as_root: bool) -> asyncio.subprocess.Process:
    if not as_root:
        return await asyncio.create_subprocess_exec(*role.argv, stdin=asyncio.subprocess.DEVNULL)
    return await asyncio.create_subprocess_exec(
        *role.argv,
        stdin=asyncio.subprocess.DEVNULL,
        user=role.uid,
        group=role.gid,
        extra_groups=list(role.groups),
        env={**os.environ, "HOME": role.home},
    )


async def _stop(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def prepare_agent_dir(folder: Path, as_root: bool) -> None:
    """The agent's folder, owned by its user and Envoy's group (0750); the agent makes sockets/ inside."""
    folder.mkdir(parents=True, exist_ok=True)
    if as_root:
        os.chown(folder, AGENT_UID, ENVOY_UID)
    folder.chmod(0o750)


async def run(roles: Sequence[Role], admin: str, drain_s: float, as_root: bool) -> int:
    procs = {role.name: await _spawn(role, as_root) for role in roles}
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    waits = {asyncio.ensure_future(p.wait()): name for name, p in procs.items()}
    stop_wait = asyncio.ensure_future(stopping.wait())
    done, _ = await asyncio.wait([*waits, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stop_wait not in done:  # a process ended by itself: the replica is broken, compose restarts it
        name = waits[next(iter(done))]
        code = procs[name].returncode or 1
        print(f"mecha pod: {name} exited with code {procs[name].returncode}; stopping", file=sys.stderr)
    else:  # drain, wait, stop: DRAINING in callers' EDS and in-flight requests finish first
        capabilities = asyncio.ensure_future(_stop(procs["capabilities"], drain_s + 5))
        await drain_listeners(admin)
        await asyncio.sleep(drain_s)
        await capabilities
    stop_wait.cancel()
    for name in ("envoy", "app", "capabilities"):
        await _stop(procs[name], 5)
    return code


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--capabilities", required=True, help="the capability service's command line")
    parser.add_argument("--envoy", required=True, help="Envoy's command line")
    parser.add_argument("--app", required=True, help="the app's command line")
    parser.add_argument("--agent-dir", required=True, help="folder for the agent's sockets/ (made here)")
    parser.add_argument("--admin", default="127.0.0.1:15000", help="Envoy's loopback admin (drained on stop)")
    parser.add_argument("--drain-seconds", type=float, default=3.0, help="bounded drain time on SIGTERM")
    parser.add_argument("--keep-user", action="store_true", help="run every process as this user (tests)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    as_root = os.geteuid() == 0 and not args.keep_user  # else every process runs as this user
    prepare_agent_dir(Path(args.agent_dir), as_root)
    roles = [
        Role("capabilities", shlex.split(args.capabilities), AGENT_UID, AGENT_UID, (ENVOY_UID,), AGENT_HOME),
        Role("envoy", shlex.split(args.envoy), ENVOY_UID, ENVOY_UID),
        Role("app", shlex.split(args.app), APP_UID, APP_UID),
    ]
    return asyncio.run(run(roles, args.admin, args.drain_seconds, as_root))


if __name__ == "__main__":
    sys.exit(main())
