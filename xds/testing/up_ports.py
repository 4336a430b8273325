"""A free block of ports for `mecha up --port-offset N`, for the tests and benches that start one (one
definition: tests/e2e/mecha_up.py, tests/docs and bench/up_bench.py all pick their offset here)."""

from __future__ import annotations

import random

from xds.runner.listeners import up_listener_ports
from xds.runner.procs import port_in_use

TRIES = 50


class NoFreeOffset(RuntimeError):
    """Every offset tried had a port in use."""


def up_ports(offset: int, mode: str = "sidecar") -> list[int]:
    """Every port `mecha up --mode MODE --port-offset OFFSET` binds (xds/runner/listeners.py), in the same
    order for every offset (so zip(up_ports(0), up_ports(n)) maps them)."""
    return list(up_listener_ports(mode, offset).values())


def free_offset(step: int = 1) -> int:
    """A --port-offset (a multiple of step) whose ports are all free now; NoFreeOffset after TRIES tries."""
    for _ in range(TRIES):
        offset = random.randrange(1000, 14000, step)
        if not any(port_in_use(p) for p in up_ports(offset)):
            return offset
    raise NoFreeOffset(f"no free block of ports for `mecha up` in {TRIES} tries")
