"""pubsub.jetstream: NATS JetStream with durable pull consumers.

Each topic is a subject captured by a stream (`streamName` metadata, else one stream per topic created on
demand). The durable consumer is named after the group (the app id, or `durableName` metadata) and topic:
replicas of one app pull from the same durable, so each message goes to one of them (the queue-group
semantic), while another app has its own durable and gets every message. Un-acked messages come back
after `ackWait` - also to a replica started after the original subscriber died.

A pulled message's ackWait runs from the moment the server sends it, so a subscription never pulls more
than it has free handlers (at most `pullBatch` per pull) and hands each message to a handler as soon as it
arrives: a message left waiting in the client would come back, to another replica, while still handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError

from capabilities.blocks.pubsub import metadata as md
from capabilities.blocks.pubsub.contract import (
    Feature,
    Handler,
    Message,
    PubSubBackendError,
    SubscribeOptions,
    Unsubscribe,
)
from capabilities.blocks.pubsub.tasks import BoundedTasks
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PULL_WAIT_S = 1.0  # how long one pull request waits on the server for messages


def _safe_name(*parts: str) -> str:
    """Stream/durable names may not contain . * > or spaces; keep them readable and collision-free."""
    joined = "-".join(parts)
    cleaned = _UNSAFE.sub("_", joined)
    if cleaned != joined:
        cleaned += "_" + hashlib.sha1(joined.encode()).hexdigest()[:8]
    return cleaned


@register("pubsub.jetstream")
class JetStreamPubSub:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.url = md.get_str(spec, "natsURL", "nats://127.0.0.1:4222")
        self.stream_name = md.get_str(spec, "streamName")
        self.durable_name = md.get_str(spec, "durableName")
        self.ack_wait = md.get_duration(spec, "ackWait", 30.0)
        self.batch = md.get_int(spec, "pullBatch", 64, minimum=1)
        self.publish_timeout = md.get_duration(spec, "publishTimeout", 5.0)
        self.connect_timeout = md.get_duration(spec, "connectTimeout", 3.0)
        self._nc: nats.NATS | None = None
        self._streams: set[str] = set()
        self._stoppers: list[Unsubscribe] = []

    async def init(self) -> None:
        nc = nats.NATS()
        try:
            # Reconnect forever once connected (a broker restart must not kill subscriptions), but bound
            # the first connection so that init fails clearly when the server is down.
            await asyncio.wait_for(
                nc.connect(
                    self.url,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    # nats-py annotates int but sleeps on it: half a second between reconnects
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]
                ),
                timeout=self.connect_timeout,
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise PubSubBackendError(f"nats {self.url} is not reachable: {reason}") from exc
        self._nc = nc
        self._js = self._nc.jetstream()

    def features(self) -> set[str]:
        return {Feature.CONSUMER_GROUPS, Feature.DURABLE, Feature.REDELIVERY}

    def _stream_for(self, topic: str) -> str:
        return self.stream_name or _safe_name("mecha", topic)

    async def _ensure_stream(self, topic: str) -> str:
        stream = self._stream_for(topic)
        if stream in self._streams:
            return stream
        try:
            await self._js.stream_info(stream)
        except NotFoundError:
            if self.stream_name:
                reason = f"jetstream: stream {stream} (metadata streamName) does not exist"
                raise PubSubBackendError(reason) from None
            await self._js.add_stream(StreamConfig(name=stream, subjects=[topic]))
        self._streams.add(stream)
        return stream

    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        if self._nc is None or not self._nc.is_connected:
            raise PubSubBackendError(f"nats {self.url} is not connected")
        try:
            stream = await self._ensure_stream(topic)
            await self._js.publish(
                topic, data, timeout=self.publish_timeout, stream=stream, headers=dict(metadata) or None
            )
        except PubSubBackendError:
            raise
        except Exception as exc:
            raise PubSubBackendError(f"nats {self.url}: {exc!r}") from exc

    async def subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Unsubscribe:
        if self._nc is None:
            raise PubSubBackendError(f"nats {self.url} is not connected")
        try:
            stream = await self._ensure_stream(topic)
            durable = _safe_name(self.durable_name or options.group, topic)
            config = ConsumerConfig(
                name=durable,
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=topic,
                max_ack_pending=max(1000, options.max_concurrency),
            )
            try:
                await self._js.consumer_info(stream, durable)
            except NotFoundError:
                await self._js.add_consumer(stream, config)
        except PubSubBackendError:
            raise
        except Exception as exc:
            raise PubSubBackendError(f"jetstream: subscribing {options.group} to {topic}: {exc!r}") from exc
        tasks = BoundedTasks(options.max_concurrency, f"jetstream:{topic}:{options.group}")

        async def handle(msg: Msg) -> None:
            message = Message(topic, msg.data, dict(msg.headers or {}), str(msg.metadata.sequence.stream))
            try:
                await handler(message)
            except Exception as exc:
                log.debug("jetstream: message on %s not acked: %s", topic, exc)
                await msg.nak(delay=1.0)
                return
            await msg.ack()

        puller = _Puller(
            self._nc,
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            handle,
            tasks,
            limit=options.max_concurrency,
            batch=self.batch,
            label=f"jetstream {self.spec.name}: pull on {topic}",
        )
        try:
            inbox = await self._nc.subscribe(f"{puller.inbox}.*", cb=puller.arrived)
        except Exception as exc:
            raise PubSubBackendError(f"jetstream: subscribing {options.group} to {topic}: {exc!r}") from exc
        tasks.start(puller.run())

        async def unsubscribe() -> None:
            try:  # first, so that no message arriving now starts a handler; the durable stays on the server
                await inbox.unsubscribe()
            except Exception as exc:
                log.debug("jetstream: unsubscribe %s: %r", topic, exc)
            await tasks.stop()
            if unsubscribe in self._stoppers:
                self._stoppers.remove(unsubscribe)

        self._stoppers.append(unsubscribe)
        return unsubscribe

    async def close(self) -> None:
        for stop in list(self._stoppers):
            await stop()
        self._stoppers.clear()
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception as exc:
                log.debug("jetstream: close: %r", exc)
            self._nc = None


class _Puller:
    """Pulls one durable consumer into at most max_concurrency handlers. One pull request at a time asks
    for no more messages than there are free handlers (nats-py's fetch() would keep the first messages of
    a batch until it fills or times out, and a fetched batch may outnumber the free handlers)."""

    def __init__(
        self,
        nc: nats.NATS,
        next_subject: str,
        handle: Callable[[Msg], Awaitable[None]],
        tasks: BoundedTasks,
        *,
        limit: int,
        batch: int,
        label: str,
    ):
        self._nc = nc
        self._next_subject = next_subject
        self._handle = handle
        self._tasks = tasks
        self._limit = max(1, limit)
        self._batch = batch
        self._label = label
        self.inbox = nc.new_inbox()  # pull request N has the reply subject inbox.N
        self._busy = 0  # handlers running
        self._freed = asyncio.Event()
        self._request = 0  # the pull request in flight
        self._wanted = 0  # messages it may still bring: handlers kept free for them
        self._over = asyncio.Event()
        self._refusal = ""  # why the server ended the request, if not an expiry

    async def run(self) -> None:
        while True:
            while self._busy >= self._limit:
                self._freed.clear()
                await self._freed.wait()
            if not self._nc.is_connected:  # requests queued while reconnecting would all land at once
                await asyncio.sleep(0.5)
                continue
            self._request += 1
            self._wanted = min(self._batch, self._limit - self._busy)
            self._over.clear()
            self._refusal = ""
            body = json.dumps({"batch": self._wanted, "expires": int(_PULL_WAIT_S * 1e9)}).encode()
            try:
                await self._nc.publish(self._next_subject, body, reply=f"{self.inbox}.{self._request}")
                # a status lost to a reconnect must not stall the loop: past its expiry, ask again
                await asyncio.wait_for(self._over.wait(), _PULL_WAIT_S + 1.0)
            except TimeoutError:
                pass
            except Exception as exc:
                self._refusal = repr(exc)
            self._wanted = 0
            if self._refusal:
                log.warning("%s failed (%s); retrying", self._label, self._refusal)
                await asyncio.sleep(0.5)

    async def arrived(self, msg: Msg) -> None:
        if not msg.reply:  # a status, sent to the request's reply subject: 408 it expired, 100 a heartbeat
            status = (msg.headers or {}).get("Status", "")
            if msg.subject.rpartition(".")[2] == str(self._request) and status != "100":
                if status not in ("408", "404"):
                    self._refusal = f"{status} {(msg.headers or {}).get('Description', '')}".strip()
                self._over.set()
            return
        if self._wanted > 0:  # (a message names no request: count it against the one in flight)
            self._wanted -= 1
            if self._wanted == 0:
                self._over.set()
        elif self._busy >= self._limit:
            # a late answer to an earlier request and no handler free: hand it back at once, before its
            # ackWait runs out here and it reaches another replica while this one still holds it
            try:
                await msg.nak()
            except Exception as exc:
                log.debug("%s: nak: %r", self._label, exc)
            return
        self._busy += 1
        await self._tasks.spawn(self._run(msg))

    async def _run(self, msg: Msg) -> None:
        try:
            await self._handle(msg)
        finally:
            self._busy -= 1
            self._freed.set()
