"""Connection settings for backing servers, parsed from Dapr component metadata (shared by all blocks).

Client libraries are imported inside the functions so that loading the service stays fast.
"""

from __future__ import annotations

import shlex
from typing import Any


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def redis_client(metadata: dict[str, str], *, decode_responses: bool = False) -> Any:
    """redis.asyncio.Redis from redisHost ("host:port"), redisPassword, redisUsername, redisDB, enableTLS."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry  # the asyncio client converts (and warns about) the sync one
    from redis.backoff import ExponentialBackoff

    host_port = metadata.get("redisHost") or "localhost:6379"
    host, _, port = host_port.rpartition(":")
    if not host:
        host, port = host_port, "6379"
    try:
        port_number = int(port)
        db = int(metadata.get("redisDB") or 0)
    except ValueError:
        raise ValueError(
            f"metadata redisHost/redisDB: expected host:port and an integer db, got {host_port!r}"
        ) from None
    timeout = float(metadata.get("dialTimeout", "2").rstrip("s") or 2)
    # Like Dapr's redis metadata: few, fast retries; longer outages are the resiliency policy's business.
    retries = int(metadata.get("redisMaxRetries") or 3)
    retry = Retry(ExponentialBackoff(cap=0.512, base=0.008), retries)
    return aioredis.Redis(
        host=host,
        port=port_number,
        db=db,
        username=metadata.get("redisUsername") or None,
        password=metadata.get("redisPassword") or None,
        ssl=_bool(metadata.get("enableTLS")),
        socket_connect_timeout=timeout,
        socket_timeout=float(metadata.get("readTimeout", "5").rstrip("s") or 5),
        decode_responses=decode_responses,
        retry=retry,
    )


def redis_address(metadata: dict[str, str]) -> str:
    return metadata.get("redisHost") or "localhost:6379"


def postgres_connect_args(metadata: dict[str, str]) -> dict[str, Any]:
    """asyncpg.connect/create_pool kwargs from connectionString: a URL or libpq 'key=value' pairs."""
    conn = (metadata.get("connectionString") or "").strip()
    if not conn:
        raise ValueError(
            "metadata connectionString is required (e.g. 'host=127.0.0.1 user=postgres database=test')"
        )
    if "://" in conn:
        return {"dsn": conn}
    args: dict[str, Any] = {}
    names = {"host": "host", "port": "port", "user": "user", "password": "password", "dbname": "database",
             "database": "database", "connect_timeout": "timeout", "sslmode": "ssl"}  # fmt: skip
    for part in shlex.split(conn):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"metadata connectionString: {part!r} is not key=value")
        target = names.get(key)
        if target is None:
            continue  # libpq options asyncpg does not take (application_name, pool settings...) are ignored
        if target == "port":
            args[target] = int(value)
        elif target == "timeout":
            args[target] = float(value)
        elif target == "ssl":
            args[target] = None if value in ("disable", "allow", "prefer") else value
        else:
            args[target] = value
    args.setdefault("timeout", 5.0)
    return {k: v for k, v in args.items() if v is not None}


def postgres_target(metadata: dict[str, str]) -> str:
    args = postgres_connect_args(metadata)
    if "dsn" in args:
        return str(args["dsn"]).split("@")[-1]
    return f"{args.get('host', 'localhost')}:{args.get('port', 5432)}/{args.get('database', '')}"


def sql_identifier(name: str, field: str) -> str:
    """A table name safe to interpolate (letters, digits, underscore, optional schema)."""
    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", name):
        raise ValueError(
            f"metadata {field}: {name!r} is not a valid table name (letters, digits, underscore)"
        )
    return name


async def postgres_pool_with_schema(
    metadata: dict[str, str], table: str, statements: list[str], *, max_size: int = 5
) -> Any:
    """An asyncpg pool whose schema statements have run once. An advisory lock on the table name serialises
    them, so replicas starting together do not race on CREATE TABLE / CREATE SEQUENCE."""
    import asyncpg

    pool = await asyncpg.create_pool(min_size=1, max_size=max_size, **postgres_connect_args(metadata))
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", table)
            for statement in statements:
                await conn.execute(statement)
    except BaseException:
        await pool.close()
        raise
    return pool
