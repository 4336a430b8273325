"""Fuzz the Dapr gRPC API of a real capability service (subprocess): thousands of calls whose requests are
random bytes, bit-flipped messages or well-formed messages with hostile field values, over every method of
dapr.proto.runtime.v1.Dapr but Shutdown. No INTERNAL/UNKNOWN/DATA_LOSS except the daprd-compatible ones
listed below, no process death, and SaveState/GetState work afterwards. Seeded: FUZZ_SEED, FUZZ_GRPC_CASES."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from dapr.proto.runtime.v1 import dapr_pb2, dapr_pb2_grpc, state_pb2
from dapr_fuzz_kit import SidecarProcess, fuzz_sidecar, weird_text
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.rpc import error_details_pb2, status_pb2

CASES = int(os.environ.get("FUZZ_GRPC_CASES", "2400"))
SEED = int(os.environ.get("FUZZ_SEED", "30"))
CONCURRENCY = 8
CALL_TIMEOUT_S = 5.0

SERVICE = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
SKIPPED = {"Shutdown"}  # stops the process by design
# The building blocks Mecha implements get most of the cases; the rest must still refuse cleanly.
FOCUS = {
    "InvokeService", "GetState", "GetBulkState", "SaveState", "QueryStateAlpha1", "DeleteState",
    "DeleteBulkState", "ExecuteStateTransaction", "PublishEvent", "BulkPublishEventAlpha1",
    "BulkPublishEvent", "SubscribeTopicEventsAlpha1", "InvokeBinding", "GetSecret", "GetBulkSecret",
    "GetConfiguration", "GetConfigurationAlpha1", "SubscribeConfiguration", "UnsubscribeConfiguration",
    "TryLockAlpha1", "UnlockAlpha1", "GetMetadata", "SetMetadata",
}  # fmt: skip
STORE_NAMES = ["statestore", "pubsub", "files", "vault", "locks", "config", "nope", ""]
STORE_FIELDS = {"store_name", "pubsub_name", "name", "component_name"}

# Server faults in gRPC terms. These three reasons are daprd's own INTERNAL answers for the same input
# (dapr pkg/messages); a request that is not a valid protobuf is INTERNAL "grpc: error unmarshalling request"
# in daprd (grpc-go) too.
FAULT_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
ALLOWED_INTERNAL_REASONS = {
    "ERR_INVOKE_OUTPUT_BINDING": "daprd: ErrInvokeOutputBinding (a binding operation failed)",
    "ERR_SECRET_GET": "daprd: ErrSecretGet (a secret the store does not hold)",
    "ERR_CONFIGURATION_UNSUBSCRIBE": "daprd: ErrConfigurationUnsubscribe (unknown subscription id)",
    "ERR_DIRECT_INVOKE": "daprd: ErrDirectInvoke (an unknown app id: 'failed to invoke, id: ...')",
}
UNMARSHAL = "grpc: error unmarshalling request"
# grpcio's asyncio client replaces the server's status by this one when its write loses the race with the
# server ending the stream (grpc/grpc#36066): a client-side artifact, not the server's answer.
CLIENT_WRITE_RACE = "Internal error from Core"


def message_class(descriptor: Descriptor) -> Any:
    return message_factory.GetMessageClass(descriptor)


def fill(rng: random.Random, message: Any, depth: int = 0) -> None:
    """Set a random subset of the fields of message to hostile values (recursively, bounded)."""
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.3:
            continue
        repeated = field.is_repeated
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, field.name)
            for _ in range(rng.randrange(4)):
                key_field, value_field = (
                    field.message_type.fields_by_name["key"],
                    field.message_type.fields_by_name["value"],
                )
                key = scalar(rng, key_field)
                if value_field.message_type is not None:
                    if depth < 3:
                        fill(rng, target[key], depth + 1)
                else:
                    target[key] = scalar(rng, value_field)
            continue
        if field.message_type is not None:
            if depth >= 3:
                continue
            if repeated:
                for _ in range(rng.randrange(4)):
                    fill(rng, getattr(message, field.name).add(), depth + 1)
            else:
                fill(rng, getattr(message, field.name), depth + 1)
            continue
        if repeated:
            getattr(message, field.name).extend(scalar(rng, field) for _ in range(rng.randrange(4)))
        elif field.containing_oneof is None or rng.random() < 0.5:
            setattr(message, field.name, scalar(rng, field))


def scalar(rng: random.Random, field: FieldDescriptor) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if field.name in STORE_FIELDS and rng.random() < 0.7:
            return rng.choice(STORE_NAMES)
        return weird_text(rng)
    if kind == FieldDescriptor.TYPE_BYTES:
        choices = [
            b"",
            b"{}",
            b'{"a":1}',
            b"[" * 5000,
            b'"\\ud800"',
            bytes(rng.randrange(256) for _ in range(50)),
        ]
        return rng.choice(choices)
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_ENUM:
        return rng.choice([v.number for v in field.enum_type.values])
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice([0.0, -1.0, 1e308, float("inf"), float("nan")])
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return rng.choice([0, 1, 2**32 - 1])
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return rng.choice([0, 1, 2**64 - 1])
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return rng.choice([0, -1, 2**63 - 1, -(2**63)])
    return rng.choice([0, -1, 2**31 - 1, -(2**31)])


def request_bytes(rng: random.Random, method: MethodDescriptor) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:  # not a protobuf at all
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    message = message_class(method.input_type)()
    fill(rng, message)
    data = message.SerializeToString()
    if kind in (1, 2) and data:  # bit flips / truncation of a valid message
        mutated = bytearray(data)
        if kind == 1:
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        else:
            del mutated[rng.randrange(len(mutated)) :]
        return bytes(mutated)
    if kind == 3:  # a string field holding bytes that are not UTF-8 (field 1, wire type 2)
        return b"\x0a\x03\xff\xfe\xfd" + data
    return data


def pick_method(rng: random.Random) -> MethodDescriptor:
    names = (
        sorted(FOCUS) if rng.random() < 0.85 else [m.name for m in SERVICE.methods if m.name not in SKIPPED]
    )
    return SERVICE.methods_by_name[rng.choice(names)]


def error_reason(trailing: Any) -> str:
    """The ErrorInfo reason (ERR_...) of a status carried in grpc-status-details-bin, if any."""
    for key, value in trailing or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Is(info.DESCRIPTOR):
                    detail.Unpack(info)
                    return info.reason
    return ""


def _invoked_error_code(details: str) -> str:
    """InvokeService goes through the HTTP invoke path: the errorCode of its daprd-style JSON error body."""
    try:
        body = json.loads(details)
    except ValueError:
        return ""
    return str(body.get("errorCode", "")) if isinstance(body, dict) else ""


def verdict(method: MethodDescriptor, code: grpc.StatusCode, details: str, trailing: Any) -> str | None:
    """None when the final status is acceptable; otherwise a description for the failure report."""
    if code not in FAULT_CODES:
        return None
    if code == grpc.StatusCode.INTERNAL and (
        details.startswith(UNMARSHAL)
        or error_reason(trailing) in ALLOWED_INTERNAL_REASONS
        or _invoked_error_code(details) in ALLOWED_INTERNAL_REASONS
    ):
        return None
    if method.client_streaming and details == CLIENT_WRITE_RACE:
        return None
    return f"{method.name}: {code.name} {details[:200]!r}"


async def call(channel: grpc.aio.Channel, method: MethodDescriptor, data: bytes) -> grpc.StatusCode | str:
    """One call; the outcome is the call's final status (read from the call, not from a failed write: the
    server may end a stream before the client has written)."""
    path = f"/{SERVICE.full_name}/{method.name}"
    identity = {"request_serializer": None, "response_deserializer": None}
    if method.client_streaming:
        stream: Any = channel.stream_stream(path, **identity)(timeout=CALL_TIMEOUT_S)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await stream.write(data)
            await stream.done_writing()
    elif method.server_streaming:
        stream = channel.unary_stream(path, **identity)(data, timeout=CALL_TIMEOUT_S)
    else:
        stream = channel.unary_unary(path, **identity)(data, timeout=CALL_TIMEOUT_S)
    try:
        await (stream if not (method.client_streaming or method.server_streaming) else stream.read())
    except grpc.aio.AioRpcError:
        pass
    if method.client_streaming or method.server_streaming:
        stream.cancel()  # one answer is enough: a subscription otherwise waits for events
    code = await stream.code()
    if code == grpc.StatusCode.CANCELLED or (
        code == grpc.StatusCode.DEADLINE_EXCEEDED and (method.server_streaming or method.client_streaming)
    ):
        return grpc.StatusCode.OK  # cancelled by us, or a subscription waiting for events: accepted
    return verdict(method, code, await stream.details() or "", await stream.trailing_metadata()) or code


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    process = fuzz_sidecar(tmp_path_factory.mktemp("dapr-grpc-fuzz"))
    yield process
    process.stop()


async def test_malformed_grpc_requests_get_no_internal_errors_and_the_service_survives(
    sidecar: SidecarProcess,
) -> None:
    rng = random.Random(SEED)
    work = [(method, request_bytes(rng, method)) for method in (pick_method(rng) for _ in range(CASES))]
    codes: Counter[str] = Counter()
    faults: list[str] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        queue: asyncio.Queue[tuple[MethodDescriptor, bytes]] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty():
                method, data = queue.get_nowait()
                outcome = await call(channel, method, data)
                if isinstance(outcome, str):
                    faults.append(f"{outcome} <- {data[:80]!r}")
                    codes["FAULT"] += 1
                else:
                    codes[outcome.name] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        assert sum(codes.values()) >= 2000
        assert not faults, f"{len(faults)} server faults (seed {SEED}):\n" + "\n".join(faults[:20])
        # The cases reach the servicers: refusals of bad arguments and accepted calls, not only unmarshalling.
        assert codes["INVALID_ARGUMENT"] >= 200 and codes["OK"] >= 100, codes
        assert sidecar.process.poll() is None, sidecar.log()[-3000:]
        stub = dapr_pb2_grpc.DaprStub(channel)
        item = {"key": "after-fuzz", "value": b'{"ok":true}'}
        await stub.SaveState(state_pb2.SaveStateRequest(store_name="statestore", states=[item]), timeout=10)
        got = await stub.GetState(
            state_pb2.GetStateRequest(store_name="statestore", key="after-fuzz"), timeout=10
        )
        assert got.data == b'{"ok":true}'
    log = sidecar.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
