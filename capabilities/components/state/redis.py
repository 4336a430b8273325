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
# last-write save (the common one) is HINCRBY + HSET + PERSIST.
MULTI_SCRIPT = """
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
# The spec of a plain last-write save without TTL (most saves), encoded once rather than per request.
PLAIN_SAVE_SPEC = json.dumps({"t": "s", "e": "", "f": 0, "ttl": -1})


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

    async def multi(self, operations: list[Operation]) -> None:
        if not operations:
            return
        specs: list[str] = []
        data: list[bytes] = []
        for op in operations:
            if op.etag:
                parse_version_etag(op.etag)  # malformed -> 400 before touching Redis
            if isinstance(op, SetRequest):
                if not op.etag and not op.first_write and op.ttl_seconds is None:
                    specs.append(PLAIN_SAVE_SPEC)
                else:
                    ttl = op.ttl_seconds if op.ttl_seconds is not None else -1
                    spec = {"t": "s", "e": op.etag or "", "f": int(op.first_write), "ttl": ttl}
                    specs.append(json.dumps(spec))
                data.append(op.value)
            else:
                specs.append(json.dumps({"t": "d", "e": op.etag or "", "f": 0, "ttl": -1}))
                data.append(b"")
        from redis.exceptions import NoScriptError, ResponseError

        keys = [op.key for op in operations]
        args = ["[" + ",".join(specs) + "]", *data]
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
