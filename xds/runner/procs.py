"""Child-process supervision: start with logs to a file, restart on death with backoff, stop by PID (TERM,
then KILL), never orphan (a child gets SIGTERM when its supervisor dies, even by SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # after 1, 2, 3... deaths in a row
STABLE_AFTER_S = 30.0  # a child that ran this long before dying starts the backoff again from the shortest
# setpriv(1) (util-linux) sets PR_SET_PDEATHSIG and execs the child: no Python runs between fork and exec.
# A preexec_fn did, which Python documents as unsafe with threads and which forces fork() over vfork(): with
# gRPC running in the supervisor's process, its fork handlers aborted children before their exec (SIGABRT).
_SETPRIV = shutil.which("setpriv") if sys.platform == "linux" else None


@dataclass
class Child:
    name: str
    kind: str  # control-plane | app | envoy | capabilities
    argv: list[str]
    log: Path
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    stopped: bool = False  # we stopped it on purpose (not a crash)
    env: dict[str, str] = field(default_factory=dict, repr=False)  # may hold API tokens
    restarts: int = 0
    started_at: float = 0.0  # monotonic
    deaths_in_a_row: int = 0
    restart_at: float | None = None  # monotonic time of the scheduled restart after a death
    last_exit: int | None = None
    admin: str = ""  # an Envoy's admin host:port (loopback): drained through it before it is stopped

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


def _die_with_parent(argv: list[str]) -> list[str]:
    """argv run so that the child gets SIGTERM when the thread that spawned it (the supervisor's event loop)
    dies, so a SIGKILLed or hung-up supervisor leaves no orphans (PR_SET_PDEATHSIG survives the exec)."""
    return [_SETPRIV, "--pdeathsig", "TERM", "--", *argv] if _SETPRIV else argv


def _open_private_log(path: Path) -> int:
    """Append-only log fd, created 0600 (logs may echo tokens from a child's config or errors)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def touch_private_log(path: Path) -> Path:
    """Create a log a child opens itself (Envoy's --log-path keeps the mode of an existing file) as 0600."""
    os.close(_open_private_log(path))
    return path


class Supervisor:
    """Starts children in their own session (Ctrl-C reaches only us), restarts the ones that die (see
    `restart_dead`) and stops them in reverse order. on_change runs after every start/restart (the state
    file keeps current pids); report gets one human line per death and restart."""

    def __init__(
        self, on_change: Callable[[], None] | None = None, report: Callable[[str], None] | None = None
    ) -> None:
        self.children: list[Child] = []
        self.on_change = on_change
        self.report = report

    async def start(self, child: Child, env: dict[str, str] | None = None) -> Child:
        child.env = dict(env or {})
        await self._spawn(child)
        self.children.append(child)
        self._changed()
        return child

    def forget(self, child: Child) -> None:
        """A child stopped for good (a deleted Gateway's Envoy): no longer listed, restarted or stopped."""
        if child in self.children:
            self.children.remove(child)
            self._changed()

    async def _spawn(self, child: Child) -> None:
        fd = _open_private_log(child.log)
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *_die_with_parent(child.argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **child.env},
            )
        finally:
            os.close(fd)
        child.started_at = time.monotonic()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _say(self, line: str) -> None:
        if self.report is not None:
            self.report(line)

    def dead(self) -> list[Child]:
        """Children that exited without being stopped by us."""
        return [c for c in self.children if c.exited is not None and not c.stopped]

    async def restart_dead(self, now: float | None = None) -> list[Child]:
        """Schedule a restart for each child that died (backoff 0.5 s doubling to 30 s while it keeps dying
        within STABLE_AFTER_S of its start) and restart those whose delay has passed; returns those."""
        now = time.monotonic() if now is None else now
        restarted = []
        for child in self.dead():
            if child.restart_at is None:
                ran_s = now - child.started_at
                child.deaths_in_a_row = 1 if ran_s >= STABLE_AFTER_S else child.deaths_in_a_row + 1
                delay = RESTART_BACKOFF_S[min(child.deaths_in_a_row, len(RESTART_BACKOFF_S)) - 1]
                child.restart_at = now + delay
                child.last_exit = child.exited
                self._say(
                    f"warning: {child.name} (pid {child.pid}) exited with code {child.exited}; "
                    f"restarting in {delay:g} s; log {child.log}"
                )
            if now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                await self._spawn(child)
                restarted.append(child)
                self._say(f"restarted {child.name}: pid {child.pid} (restart {child.restarts})")
        if restarted:
            self._changed()
        return restarted

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

    async def stop_all(self, grace: float = 5.0, drain_s: float | None = None) -> None:
        """Drain, wait, stop: capability services get SIGTERM first (their endpoint is reported DRAINING,
        subscriptions stop pulling) while each Envoy drains its listeners (/drain_listeners?graceful); after
        drain_s (callers' EDS says DRAINING, in-flight requests finish) the Envoys stop, then apps, then the
        control plane."""
        wait = drain_seconds() if drain_s is None else drain_s
        envoys = [c for c in self.children if c.kind == "envoy" and c.admin and c.exited is None and c.proc]
        if wait > 0 and envoys:
            capabilities = [c for c in self.children if c.kind == "capabilities"]
            terminating = asyncio.gather(*(self.stop_child(c, grace + wait) for c in capabilities))
            await asyncio.gather(*(drain_listeners(c.admin) for c in envoys))
            await asyncio.sleep(wait)
            await terminating
        order = {"envoy": 0, "app": 1, "capabilities": 1, "control-plane": 2}
        by_stage: dict[int, list[Child]] = {}
        for child in self.children:
            by_stage.setdefault(order.get(child.kind, 1), []).append(child)
        for stage in sorted(by_stage):
            await asyncio.gather(*(self.stop_child(c, grace) for c in by_stage[stage]))


DRAIN_SECONDS = 2.0  # default bounded drain time (MECHA_DRAIN_SECONDS): one EDS push plus in-flight requests


def drain_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("MECHA_DRAIN_SECONDS", DRAIN_SECONDS)))
    except ValueError:
        return DRAIN_SECONDS


async def drain_listeners(admin: str, timeout_s: float = 2.0) -> bool:
    """POST /drain_listeners?graceful on an Envoy's (loopback) admin: connections are told to close after
    their current request, listeners stop after --drain-time-s. False when Envoy did not answer."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.post(f"http://{admin}/drain_listeners?graceful") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could not bind host:port now: something LISTENS there (or holds it without
    SO_REUSEADDR). Binds with SO_REUSEADDR as our servers (Envoy, aiohttp, gRPC) do, so the TIME_WAIT left
    by a `mecha up` stopped a moment ago does not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
