"""state.redis: Redis hashes {data, version} (the layout Dapr's redis store uses), ETag = version.

Every write goes through one Lua script that checks all ETags before applying any operation, so a single
save and a multi-key transaction are both atomic and race-free.
"""

from __future__ import annotations

import json
from typing import Any

from capabilities import registry
from capabilities.blocks.state.contract import (
    DeleteRequest,
    Feature,
    Operation,
    SetRequest,
    StoredItem,
    etag_mismatch,
    parse_version_etag,
)
from capabilities.components.redis_base import RedisComponent
from capabilities.components.state.redis_conn import DedicatedConnection

# KEYS[i] = key of op i; ARGV[1] = JSON [{t: "s"|"d", e: etag|"", f: 0|1, ttl: n (-1 = none)}];
# ARGV[i+1] = data of op i. The current version is read only for an op with an ETag or first-write: a plain
# last-write save (the common one) is HINCRBY + HSET + PERSIST. ARGV[1] = "p" says every op is such a save
# (no ETag, last-write, no TTL): no JSON for Redis to decode (cjson is most of the script's own time).
MULTI_SCRIPT = """
if ARGV[1] == 'p' then
  for i, key in ipairs(KEYS) do
    redis.call('HINCRBY', key, 'version', 1)
    redis.call('HSET', key, 'data', ARGV[i + 1])
    redis.call('PERSIST', key)
  end
  return #KEYS
end
local ops = cjson.decode(ARGV[1])
for i, op in ipairs(ops) do
  if op.e ~= '' or (op.t == 's' and op.f == 1) then
    local cur = redis.call('HGET', KEYS[i], 'version')
    if op.e ~= '' then
      if (not cur) or cur ~= op.e then return redis.error_reply('ETAG_MISMATCH ' .. KEYS[i]) end
    elseif cur then
      return redis.error_reply('ETAG_MISMATCH ' .. KEYS[i])
    end
  end
end
for i, op in ipairs(ops) do
  if op.t == 'd' then
    redis.call('DEL', KEYS[i])
  else
    redis.call('HINCRBY', KEYS[i], 'version', 1)
    redis.call('HSET', KEYS[i], 'data', ARGV[i + 1])
    if op.ttl >= 0 then redis.call('EXPIRE', KEYS[i], op.ttl) else redis.call('PERSIST', KEYS[i]) end
  end
end
return #ops
"""
ALL_PLAIN_SAVES = "p"


def _plain_save(op: SetRequest) -> bool:
    return not op.etag and not op.first_write and op.ttl_seconds is None


@registry.register("state.redis")
class RedisStateStore(RedisComponent):
    _script: Any = None
    _hot: DedicatedConnection | None = None

    async def init(self) -> None:
        await super().init()
        self._script = self._client.register_script(MULTI_SCRIPT)
        self._hot = DedicatedConnection(self._client)  # gets and saves; redis_conn.py says why

    async def close(self) -> None:
        if self._hot is not None:
            await self._hot.close()
            self._hot = None
        await super().close()

    def features(self) -> set[str]:
        return {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL}

    async def get(self, key: str) -> StoredItem | None:
        fields = await self._commands().hgetall(key)
        if not fields or b"data" not in fields:
            return None
        return StoredItem(fields[b"data"], fields.get(b"version", b"0").decode())

    def _commands(self) -> DedicatedConnection:
        if self._hot is None:
            raise RuntimeError("state.redis: the store is closed")
        return self._hot

    async def set(self, req: SetRequest) -> None:
        await self.multi([req])

    async def delete(self, req: DeleteRequest) -> None:
        await self.multi([req])

    @staticmethod
    def _specs(operations: list[Operation]) -> str:
        """ARGV[1] of the script: one spec per op (checks a malformed ETag before touching Redis: a 400)."""
        specs: list[dict[str, Any]] = []
        for op in operations:
            if op.etag:
                parse_version_etag(op.etag)
            if isinstance(op, SetRequest):
                ttl = op.ttl_seconds if op.ttl_seconds is not None else -1
                specs.append({"t": "s", "e": op.etag or "", "f": int(op.first_write), "ttl": ttl})
            else:
                specs.append({"t": "d", "e": op.etag or "", "f": 0, "ttl": -1})
        return json.dumps(specs)

    async def multi(self, operations: list[Operation]) -> None:
        if not operations:
            return
        plain = [op for op in operations if isinstance(op, SetRequest) and _plain_save(op)]
        args: list[str | bytes]
        if len(plain) == len(operations):
            args = [ALL_PLAIN_SAVES, *(op.value for op in plain)]
        else:
            args = [
                self._specs(operations),
                *(op.value if isinstance(op, SetRequest) else b"" for op in operations),
            ]
        from redis.exceptions import NoScriptError, ResponseError

        keys = [op.key for op in operations]
        try:
            try:
                await self._commands().evalsha(self._script.sha, len(keys), *keys, *args)
            except NoScriptError:  # not loaded yet (first save, or Redis restarted): the Script loads it
                await self._script(keys=keys, args=args)
        except ResponseError as exc:
            text = str(exc)
            if text.startswith("ETAG_MISMATCH"):
                raise etag_mismatch(text.split(" ", 1)[-1]) from None
            raise
