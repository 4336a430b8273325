"""The Redis state store's write script on a real Redis (issue #17 trimmed it: the current version is read
only for an op with an ETag or first-write). Every concurrency rule still holds: a plain save bumps the
version, a matching ETag writes, a stale or absent one is a mismatch, first-write refuses an existing key,
and a transaction applies nothing when one ETag fails."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis_state_kit import needs_redis, redis_store

from capabilities.blocks.state.contract import DeleteRequest, ETagError, SetRequest

pytestmark = needs_redis


@pytest_asyncio.fixture
async def store() -> AsyncIterator[object]:
    s = await redis_store()
    yield s
    await s.close()


def key() -> str:
    return f"test-writes-{uuid.uuid4().hex}"


async def test_plain_saves_bump_the_version(store) -> None:  # type: ignore[no-untyped-def]
    k = key()
    await store.set(SetRequest(key=k, value=b"1"))
    assert (await store.get(k)).etag == "1"
    await store.set(SetRequest(key=k, value=b"2"))
    item = await store.get(k)
    assert (item.value, item.etag) == (b"2", "2")
    await store.delete(DeleteRequest(key=k))


async def test_matching_etag_writes_stale_or_missing_one_is_a_mismatch(store) -> None:  # type: ignore[no-untyped-def]
    k = key()
    await store.set(SetRequest(key=k, value=b"1"))
    await store.set(SetRequest(key=k, value=b"2", etag="1"))
    with pytest.raises(ETagError) as stale:
        await store.set(SetRequest(key=k, value=b"3", etag="1"))
    assert stale.value.kind == "mismatch"
    assert (await store.get(k)).value == b"2"
    with pytest.raises(ETagError):
        await store.set(SetRequest(key=key(), value=b"x", etag="1"))  # no such key: nothing to match
    await store.delete(DeleteRequest(key=k))


async def test_first_write_refuses_an_existing_key_only(store) -> None:  # type: ignore[no-untyped-def]
    k = key()
    await store.set(SetRequest(key=k, value=b"1", first_write=True))
    with pytest.raises(ETagError):
        await store.set(SetRequest(key=k, value=b"2", first_write=True))
    assert (await store.get(k)).value == b"1"
    await store.delete(DeleteRequest(key=k))


async def test_a_transaction_with_one_stale_etag_applies_nothing(store) -> None:  # type: ignore[no-untyped-def]
    a, b = key(), key()
    await store.set(SetRequest(key=a, value=b"a1"))
    await store.set(SetRequest(key=b, value=b"b1"))
    with pytest.raises(ETagError):
        await store.multi([SetRequest(key=a, value=b"a2"), SetRequest(key=b, value=b"b2", etag="9")])
    assert (await store.get(a)).value == b"a1" and (await store.get(b)).value == b"b1"
    await store.multi([DeleteRequest(key=a), DeleteRequest(key=b)])
    assert await store.get(a) is None and await store.get(b) is None


async def test_plain_saves_in_one_call_bump_each_version_and_clear_a_ttl(store) -> None:  # type: ignore[no-untyped-def]
    a, b = key(), key()
    await store.set(SetRequest(key=a, value=b"a1", ttl_seconds=100))
    assert await store._client.ttl(a) > 0
    await store.multi([SetRequest(key=a, value=b"a2"), SetRequest(key=b, value=b"b1")])
    assert await store._client.ttl(a) == -1  # a save without ttlInSeconds makes the key permanent again
    assert [((await store.get(k)).value, (await store.get(k)).etag) for k in (a, b)] == [
        (b"a2", "2"),
        (b"b1", "1"),
    ]
    await store.set(SetRequest(key=a, value=b"a3"))
    assert (await store.get(a)).etag == "3"
    await store.multi([DeleteRequest(key=a), DeleteRequest(key=b)])
