"""The event loop `python -m capabilities` runs on: uvloop when it is installed, else asyncio's own loop.

uvloop makes each HTTP request through the service cheaper (socket I/O, callbacks and timers in C). grpc.aio
runs on it unchanged (its poller is loop-agnostic); the gRPC tests run on the same loop as the service.
MECHA_EVENT_LOOP=asyncio forces asyncio's loop (for comparison or in case of a uvloop problem).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

ENV = "MECHA_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """new_event_loop of the loop to use; for asyncio.Runner(loop_factory=...)."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice not in ("", "uvloop", "asyncio"):
        raise ValueError(f"{ENV}={choice!r}: expected uvloop or asyncio")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":  # asked for explicitly: say it is missing rather than run without it
                raise
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
