"""SubscribeTopicEventsAlpha1: a streaming subscription (bidi stream) held open by the client.

The first client message names pubsub + topic; the service subscribes to the broker with the app id as
consumer group, pushes each message as a TopicEventRequest and waits for the client's `event_processed`
(SUCCESS acks, RETRY nacks so the broker redelivers, DROP acks and logs). When the stream ends for any
reason (client cancel, server stop) the broker subscription is removed and un-answered messages are
nacked: nothing leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.runtime.v1 import pubsub_pb2

from capabilities.api.grpc.base import ApiBase
from capabilities.api.grpc.errors import abort, invalid_argument
from capabilities.blocks.pubsub import errors
from capabilities.blocks.pubsub.contract import Message, SubscribeOptions
from capabilities.delivery.grpc import events
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)


class EventNotProcessed(Exception):
    """The subscriber asked for a retry, or the stream ended before it answered: the broker redelivers."""


class StreamingSubscriptionsApi(ApiBase):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.active_streams: dict[
            int, tuple[str, str]
        ] = {}  # id(task) -> (pubsub, topic), for metadata/tests

    async def SubscribeTopicEventsAlpha1(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pubsub_pb2.SubscribeTopicEventsResponseAlpha1]:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        try:
            initial = self._validate_initial(first)
            pubsub = self.runtime.component("pubsub", initial.pubsub_name)
        except DaprError as err:
            await abort(context, err)
        key = (initial.pubsub_name, initial.topic)
        if key in self.active_streams.values():
            await abort(
                context,
                DaprError(
                    "ERR_PUBSUB_SUBSCRIBE",
                    f"streaming subscription to topic {initial.topic} on pubsub {initial.pubsub_name} "
                    "already exists for this app",
                    409,
                    "ALREADY_EXISTS",
                ),
            )

        outbox: asyncio.Queue[pubsub_pb2.SubscribeTopicEventsResponseAlpha1] = asyncio.Queue()
        pending: dict[str, asyncio.Future[int]] = {}
        raw = str(dict(initial.metadata).get("rawPayload", "")).lower() == "true"

        async def on_message(message: Message) -> None:
            event = events.to_cloud_event(message, pubsub_name=initial.pubsub_name, raw_payload=raw)
            if event.expired:
                log.info("dropping expired message %s on %s", event.cloud_event.get("id"), initial.topic)
                return
            request = events.topic_event_request(
                event.cloud_event, topic=initial.topic, pubsub_name=initial.pubsub_name
            )
            answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            pending[request.id] = answer
            try:
                await outbox.put(pubsub_pb2.SubscribeTopicEventsResponseAlpha1(event_message=request))
                status = await answer
            finally:
                pending.pop(request.id, None)
            if status == events.RETRY:
                raise EventNotProcessed(f"subscriber asked to retry event {request.id}")
            if status == events.DROP:
                log.warning("subscriber dropped event %s on topic %s", request.id, initial.topic)

        async def read_answers() -> None:
            async for req in request_iterator:
                if not req.HasField("event_processed"):
                    continue  # a second initial_request is ignored, like daprd
                answer = pending.get(req.event_processed.id)
                if answer is not None and not answer.done():
                    answer.set_result(req.event_processed.status.status)

        try:
            unsubscribe = await pubsub.subscribe(
                initial.topic,
                on_message,
                SubscribeOptions(group=self.runtime.app_id, metadata=dict(initial.metadata)),
            )
        except DaprError as err:
            await abort(context, err)
        except Exception as exc:
            await abort(context, errors.publish_failed(initial.pubsub_name, initial.topic, exc))
        me = id(asyncio.current_task())
        self.active_streams[me] = key
        reader = asyncio.create_task(read_answers(), name=f"grpc-sub-reader:{initial.topic}")
        next_out: asyncio.Task[Any] | None = None
        try:
            yield pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
                initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1()
            )
            while True:
                next_out = asyncio.create_task(outbox.get())
                done, _ = await asyncio.wait({next_out, reader}, return_when=asyncio.FIRST_COMPLETED)
                if next_out not in done:
                    break  # client half-closed or cancelled: end the stream
                yield next_out.result()
        finally:
            self.active_streams.pop(me, None)
            for task in (reader, next_out):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for answer in pending.values():
                if not answer.done():
                    answer.set_exception(EventNotProcessed("stream closed before the event was processed"))
            with contextlib.suppress(Exception):
                await unsubscribe()
            log.info("streaming subscription to %s/%s closed", initial.pubsub_name, initial.topic)

    @staticmethod
    def _validate_initial(first: Any) -> Any:
        if not first.HasField("initial_request"):
            raise invalid_argument(
                "ERR_PUBSUB_SUBSCRIBE",
                "the first message of SubscribeTopicEventsAlpha1 must be initial_request",
            )
        initial = first.initial_request
        if not initial.pubsub_name:
            raise errors.pubsub_name_empty()
        if not initial.topic:
            raise errors.topic_empty(initial.pubsub_name)
        return initial
