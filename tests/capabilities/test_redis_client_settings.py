"""The Redis client built from component metadata: the asyncio client gets the asyncio Retry (a synchronous
one is converted with a UserWarning per client, and its custom call_with_retry would be dropped)."""

from __future__ import annotations

import warnings

from redis.asyncio.retry import Retry

from capabilities.config.backends import redis_client


def test_redis_client_gets_an_asyncio_retry_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = redis_client({"redisHost": "127.0.0.1:6379", "redisMaxRetries": "5"})
    retry = client.get_retry()
    assert isinstance(retry, Retry) and retry._retries == 5
