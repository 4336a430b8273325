"""One discovery stream's loop, shared by the control plane's XdsServer and the agent's SDS server: requests
in, snapshots in, the pure state's actions out. Light on purpose (no metrics, cache or generated protos): the
agent runs it on a sidecar's start path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from xds.cache.snapshot import Snapshot
from xds.server.state import MAX_ECHOED_CHARS, Action, clip

Apply = Callable[[list[Action]], Awaitable[None]]
NextSnapshot = Callable[[Snapshot | None], "asyncio.Future[Snapshot]"]


def status_message(message: str) -> str:
    """A refusal's gRPC status message: ASCII only (gRPC percent-encodes the rest, up to 9 bytes a
    character) and clipped, since it travels in a trailer and the client's metadata limit (8 KB) would hide
    it."""
    return clip(message.encode("ascii", "backslashreplace").decode(), 5 * MAX_ECHOED_CHARS)


async def pump(
    context: grpc.aio.ServicerContext,
    state: Any,  # SotwStreamState | DeltaStreamState
    first: Any,  # the decoded first request
    decode: Callable[[bytes], Any],
    current: Snapshot | None,
    next_snapshot: NextSnapshot,
    apply: Apply,
    slot: Callable[[], contextlib.AbstractAsyncContextManager[Any]] = contextlib.nullcontext,
) -> None:
    """Serve the stream until the client ends it: `current` (if any) and the answer to the first request, then
    every later request and every snapshot next_snapshot(held) resolves, a snapshot's push inside slot() (the
    control plane's push throttle). CodecError/ProtocolError and gRPC errors propagate to the caller."""
    if current is not None:
        await apply(state.set_snapshot(current))
    await apply(state.handle_request(first))
    read: asyncio.Future[Any] = asyncio.ensure_future(context.read())
    watch = next_snapshot(state.snapshot)
    try:
        while True:
            await asyncio.wait((read, watch), return_when=asyncio.FIRST_COMPLETED)
            if read.done():
                raw = read.result()
                if raw is grpc.aio.EOF:
                    return
                await apply(state.handle_request(decode(raw)))
                read = asyncio.ensure_future(context.read())
            if watch.done():
                snapshot = watch.result()
                async with slot():
                    await apply(state.set_snapshot(snapshot))
                watch = next_snapshot(snapshot)
    finally:
        for pending in (read, watch):
            if not pending.done():
                pending.cancel()
