"""The workload's `mecha agent` embedded in the capability service (sidecar and node mode): started and
supervised by the service as its own child process.

The agent (xds/agent/) holds the proxy's credential and key, serves SDS and proxies ADS for the Envoy beside
this service. Nothing a Dapr component does in the service (an exception, a blocking call, a hung backend)
can stop certificate rotation, and nothing the agent does can stop the Dapr API. Whatever ends the agent is
logged and the agent starts again.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xds.agent.config import AgentConfig

log = logging.getLogger("capabilities.agent")
RESTART_S = 1.0
# printed by xds.agent.agent.run_agent once the first certificate is served
READY_LINE = b"mecha agent ready:"


PREFIX = "agent-"  # the agent's own flags (xds/agent/cli.py), as --agent-*


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xds.agent.cli import add_arguments as add_agent_arguments

    group = parser.add_argument_group("embedded mecha agent (the Envoy beside this service reaches the "
                                      "control plane through it)")  # fmt: skip
    add_agent_arguments(group, prefix=PREFIX)


def config_from_args(args: argparse.Namespace) -> AgentConfig | None:
    """None when --agent-credential is not given; ValueError names the missing or wrong flag."""
    if not args.agent_credential:
        return None
    from xds.agent.cli import config_from_args as agent_config

    return agent_config(args, None, prefix=PREFIX)


class EmbeddedAgent:
    """Runs the agent as this service's supervised child process (`python -m xds.agent`); starts it again
    whenever it ends until stop().

    A child, not a thread: the agent's imports and TLS work (~0.1 s of CPU) shared the service's GIL and
    delayed both the service's and Envoy's start (bench/sidecar_start_bench.py, docs/benchmarks.md); a process
    runs beside the service on another core, and no component (an exception, a blocking call, a hung backend)
    can stop certificate rotation. The child holds a pipe from this process as its standard input and ends
    when it closes, so it never outlives the service, even one killed with SIGKILL."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.starts = 0
        self.ready = threading.Event()  # set once the first certificate is served on the sockets
        self.process: subprocess.Popen[bytes] | None = None
        # spawning and stopping take this lock, so a restart either spawns before stop() (which then ends
        # that child) or sees the stop and spawns nothing: no agent can start once stop() has begun
        self._lock = threading.Lock()
        self._stopped = False
        self._stopping = threading.Event()  # wakes the supervisor's wait before a restart
        self._thread = threading.Thread(target=self._supervise, name="mecha-agent", daemon=True)

    def start(self) -> None:
        # at once, on the caller's thread: the agent's start overlaps the service's imports
        if self._spawn():
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            self._stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _spawn(self) -> bool:
        """Start the agent unless stop() has begun (then False)."""
        from xds.agent.cli import argv_for

        argv = argv_for(self.config, exit_with_stdin=True)
        with self._lock:
            if self._stopped:
                return False
            self.starts += 1
            # stdout carries the agent's "ready" line, copied to this service's output by the supervisor
            self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
            return True

    def _supervise(self) -> None:
        while True:
            process = self.process
            assert process is not None and process.stdout is not None
            for line in process.stdout:  # ends when the agent exits
                if line.startswith(READY_LINE):
                    self.ready.set()
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            code = process.wait()
            if process.stdin is not None:
                process.stdin.close()
            if self._stopping.is_set():
                return
            log.error("embedded mecha agent exited (code %s); starting again in %.0fs", code, RESTART_S)
            if self._stopping.wait(RESTART_S) or not self._spawn():
                return
