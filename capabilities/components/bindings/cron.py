"""bindings.cron: an input binding firing on a schedule (Dapr's bindings.cron).

`schedule`: `@every <duration>` (1s, 500ms, 1m30s), the descriptors @yearly @monthly @weekly @daily
@hourly, or a cron expression with 5 fields (minute first) or 6 fields (seconds first, as robfig/cron).
Each tick calls the handler with empty data and metadata `timeZone`, `readTimeUTC`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from datetime import UTC, datetime

from croniter import croniter

from capabilities.blocks.bindings.contract import Feature, InputHandler, StopReading
from capabilities.blocks.pubsub import metadata as md
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register

log = logging.getLogger(__name__)

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_every(spec: ComponentSpec, text: str) -> float:
    """`1m30s` -> 90.0; the Go duration syntax Dapr's @every takes."""
    compact = text.replace(" ", "")
    parts = _GO_DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise md.invalid(spec, "schedule", f"@every {text!r} is not a duration (examples: 1s, 500ms, 1m30s)")
    seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise md.invalid(spec, "schedule", "@every needs a positive duration")
    return seconds


class Schedule:
    def __init__(self, spec: ComponentSpec):
        raw = md.get_str(spec, "schedule", required=True).strip()
        self.every_s: float | None = None
        self.cron: str | None = None
        self.seconds_first = False
        if raw.startswith("@every"):
            self.every_s = parse_every(spec, raw.removeprefix("@every").strip())
            return
        expr = _DESCRIPTORS.get(raw, raw)
        fields = expr.split()
        if len(fields) not in (5, 6):
            raise md.invalid(spec, "schedule", f"{raw!r} must have 5 or 6 fields, or be @every <duration>")
        self.seconds_first = len(fields) == 6
        if not croniter.is_valid(expr, second_at_beginning=self.seconds_first):
            raise md.invalid(spec, "schedule", f"{raw!r} is not a valid cron expression")
        self.cron = expr

    def next_delay(self, now: float) -> float:
        if self.every_s is not None:
            return self.every_s
        assert self.cron is not None
        itr = croniter(self.cron, now, second_at_beginning=self.seconds_first)
        return max(0.0, float(itr.get_next(float)) - now)


@register("bindings.cron")
class CronBinding:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.schedule = Schedule(spec)
        self._stops: list[StopReading] = []

    async def init(self) -> None:
        return None

    def features(self) -> set[str]:
        return {Feature.INPUT}

    async def read(self, handler: InputHandler) -> StopReading:
        async def tick_loop() -> None:
            while True:
                await asyncio.sleep(self.schedule.next_delay(time.time()))
                now = datetime.now(UTC)
                meta = {"timeZone": "UTC", "readTimeUTC": now.isoformat()}
                try:
                    await handler(b"", meta)
                except Exception as exc:  # a missed tick is not replayed (as in Dapr)
                    log.warning("cron binding %s: delivering tick failed: %s", self.spec.name, exc)

        task = asyncio.create_task(tick_loop(), name=f"cron:{self.spec.name}")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if stop in self._stops:
                self._stops.remove(stop)

        self._stops.append(stop)
        return stop

    async def close(self) -> None:
        for stop in list(self._stops):
            await stop()
