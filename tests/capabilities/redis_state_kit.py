"""A state.redis store for the Redis state store tests, and the mark that skips them when the local Redis
does not answer."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from capability_testkit import server_answers

from capabilities import registry
from capabilities.daprspec.component import ComponentSpec

REDIS_HOST = "127.0.0.1:6379"
needs_redis = pytest.mark.skipif(
    not server_answers("127.0.0.1", 6379), reason=f"Redis not running on {REDIS_HOST}"
)


async def redis_store(metadata: dict[str, str] | None = None) -> Any:
    """An initialised state.redis store (its own component name) on REDIS_HOST unless metadata names another
    redisHost; the caller closes it."""
    spec = ComponentSpec(
        name=f"state-{uuid.uuid4().hex[:6]}",
        type="state.redis",
        metadata={"redisHost": REDIS_HOST, **(metadata or {})},
    )
    store = registry.create(spec)
    await store.init()
    return store
