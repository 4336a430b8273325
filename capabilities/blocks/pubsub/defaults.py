"""Default implementations of optional pub/sub capabilities, built from the single-item calls."""

from __future__ import annotations

import asyncio

from capabilities.blocks.pubsub.contract import BulkEntry, PubSub

BULK_PARALLELISM = 32


async def bulk_publish(pubsub: PubSub, topic: str, entries: list[BulkEntry]) -> dict[str, str]:
    """Publish each entry with bounded parallelism; return {entry_id: error} for the failures."""
    limit = asyncio.Semaphore(BULK_PARALLELISM)
    failed: dict[str, str] = {}

    async def one(entry: BulkEntry) -> None:
        async with limit:
            try:
                await pubsub.publish(topic, entry.data, entry.metadata)
            except Exception as exc:  # each entry fails on its own; the caller reports them all
                failed[entry.entry_id] = str(exc) or type(exc).__name__

    await asyncio.gather(*(one(e) for e in entries))
    return failed
