"""Child-process supervision: start with logs to a file, stop by PID (TERM, then KILL), never orphan."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    name: str
    kind: str  # control-plane | app | envoy | capabilities
    argv: list[str]
    log: Path
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    stopped: bool = False  # we stopped it on purpose (not a crash)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def exited(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Supervisor:
    """Starts children in their own session (Ctrl-C reaches only us) and stops them in reverse order."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    async def start(self, child: Child, env: dict[str, str] | None = None) -> Child:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        with child.log.open("ab") as out:
            child.proc = await asyncio.create_subprocess_exec(
                *child.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        """Children that exited without being stopped by us."""
        return [c for c in self.children if c.exited is not None and not c.stopped]

    async def stop_child(self, child: Child, grace: float = 5.0) -> None:
        child.stopped = True
        proc = child.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()

    async def stop_all(self, grace: float = 5.0) -> None:
        """Envoys first (they drain), then apps and capability services, then the control plane."""
        order = {"envoy": 0, "app": 1, "capabilities": 1, "control-plane": 2}
        by_stage: dict[int, list[Child]] = {}
        for child in self.children:
            by_stage.setdefault(order.get(child.kind, 1), []).append(child)
        for stage in sorted(by_stage):
            await asyncio.gather(*(self.stop_child(c, grace) for c in by_stage[stage]))


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
