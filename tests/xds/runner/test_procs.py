"""Supervisor and port preflight with real processes and sockets (no Envoy): restart on death, no orphans
when the supervisor is SIGKILLed, TIME_WAIT is not busy, logs are private."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from xds.runner.procs import Child, Supervisor, pid_alive, port_in_use
from xds.testing.envoy import free_port


def _wait_gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def test_a_port_in_time_wait_is_free_and_a_listened_port_is_busy() -> None:
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Envoy, aiohttp and gRPC do
    server.bind(("127.0.0.1", port))
    server.listen()
    assert port_in_use(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end goes to TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    states = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert "TIME-WAIT" in states, states
    assert not port_in_use(port)


async def test_a_dead_child_is_restarted_with_backoff_and_reported(tmp_path: Path) -> None:
    changes: list[int] = []
    lines: list[str] = []
    sup = Supervisor(on_change=lambda: changes.append(1), report=lines.append)
    child = await sup.start(Child("sleeper", "app", ["sleep", "60"], tmp_path / "logs" / "sleeper.log"))
    try:
        first_pid = child.pid
        assert first_pid is not None and changes == [1]
        os.kill(first_pid, signal.SIGKILL)
        await child.proc.wait()  # type: ignore[union-attr]
        now = time.monotonic()
        assert await sup.restart_dead(now) == []  # death seen: restart scheduled after the backoff
        assert "sleeper" in lines[-1] and "restarting in 0.5 s" in lines[-1] and "-9" in lines[-1]
        assert await sup.restart_dead(now + 0.6) == [child]
        assert child.pid != first_pid and pid_alive(child.pid) and child.restarts == 1  # type: ignore[arg-type]
        assert f"restarted sleeper: pid {child.pid}" in lines[-1] and changes == [1, 1]
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        await child.proc.wait()  # type: ignore[union-attr]
        await sup.restart_dead(now + 0.7)  # second death in a row: a longer wait
        assert "restarting in 1 s" in lines[-1]
        assert await sup.restart_dead(now + 1.2) == []
        assert await sup.restart_dead(now + 1.8) == [child] and child.restarts == 2
    finally:
        await sup.stop_all()
    assert not pid_alive(child.pid)  # type: ignore[arg-type]
    assert await sup.restart_dead() == []  # stopped on purpose: never restarted


async def test_child_logs_are_private(tmp_path: Path) -> None:
    sup = Supervisor()
    log = tmp_path / "logs" / "echo.log"
    child = await sup.start(Child("echo", "app", ["echo", "hi"], log))
    await child.proc.wait()  # type: ignore[union-attr]
    assert log.read_text() == "hi\n"
    assert log.stat().st_mode & 0o777 == 0o600


SUPERVISOR = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from xds.runner.procs import Child, Supervisor

    async def main() -> None:
        sup = Supervisor()
        for i in range(2):
            child = await sup.start(Child(f"c{i}", "app", ["sleep", "300"], Path(sys.argv[1]) / f"c{i}.log"))
            print(child.pid, flush=True)
        await asyncio.sleep(300)

    asyncio.run(main())
    """
)


def test_children_do_not_outlive_a_sigkilled_supervisor(tmp_path: Path) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert supervisor.stdout is not None
    pids = [int(supervisor.stdout.readline()) for _ in range(2)]
    try:
        assert all(pid_alive(pid) for pid in pids)
        # own session each (Ctrl-C in the terminal reaches only the supervisor)
        assert all(os.getsid(pid) == pid for pid in pids)
        supervisor.kill()
        supervisor.wait()
        assert [pid for pid in pids if not _wait_gone(pid)] == []
    finally:
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
