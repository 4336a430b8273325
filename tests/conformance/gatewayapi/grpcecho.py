"""The suite's gRPC echo service (conformance/echo-basic/grpcecho.proto, package
gateway_api_conformance.echo_basic.grpcecho, service GrpcEcho) in Python: the proto's messages built from
its descriptor (no generated code), a server answering as echo-basic's gRPC mode does (Echo and EchoTwo
return the method, request metadata, :authority and the pod's context; EchoThree is unimplemented), and the
client calls the suite's grpc.DefaultClient makes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "gateway_api_conformance.echo_basic.grpcecho"
SERVICE = f"{PACKAGE}.GrpcEcho"
_STRING, _MESSAGE = (
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
)
_OPTIONAL, _REPEATED = (
    descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
)
# message -> fields (name, number, type, message type, repeated), as grpcecho.proto declares them
_MESSAGES: dict[str, list[tuple[str, int, int, str, bool]]] = {
    "Header": [("key", 1, _STRING, "", False), ("value", 2, _STRING, "", False)],
    "Context": [
        ("namespace", 1, _STRING, "", False),
        ("ingress", 2, _STRING, "", False),
        ("service_name", 3, _STRING, "", False),
        ("pod", 4, _STRING, "", False),
    ],
    "TLSAssertions": [
        ("version", 1, _STRING, "", False),
        ("negotiated_protocol", 2, _STRING, "", False),
        ("server_name", 3, _STRING, "", False),
        ("cipher_suite", 4, _STRING, "", False),
        ("peer_certificates", 5, _STRING, "", True),
    ],
    "Assertions": [
        ("fully_qualified_method", 1, _STRING, "", False),
        ("headers", 2, _MESSAGE, "Header", True),
        ("authority", 3, _STRING, "", False),
        ("context", 4, _MESSAGE, "Context", False),
        ("tls_assertions", 5, _MESSAGE, "TLSAssertions", False),
    ],
    "EchoRequest": [],
    "EchoResponse": [
        ("assertions", 1, _MESSAGE, "Assertions", False),
        ("request", 2, _MESSAGE, "EchoRequest", False),
    ],
}
METHODS = ("Echo", "EchoTwo", "EchoThree")


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="grpcecho.proto", package=PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        m = f.message_type.add(name=name)
        for fname, number, ftype, type_name, repeated in fields:
            field = m.field.add(
                name=fname, number=number, type=ftype, label=_REPEATED if repeated else _OPTIONAL
            )
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
    svc = f.service.add(name="GrpcEcho")
    for method in METHODS:
        svc.method.add(
            name=method, input_type=f".{PACKAGE}.EchoRequest", output_type=f".{PACKAGE}.EchoResponse"
        )
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
EchoRequest: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.EchoRequest"))
EchoResponse: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.EchoResponse"))


def full_method(method: str) -> str:
    return f"/{SERVICE}/{method}"


@dataclass(frozen=True)
class PodContext:
    namespace: str
    pod: str


class GrpcEchoServer:
    """One pod's gRPC echo server (plaintext, h2c) on ip:port."""

    def __init__(self, ip: str, port: int, context: PodContext) -> None:
        self.context = context
        self.server = grpc.aio.server()
        handlers = {
            m: grpc.unary_unary_rpc_method_handler(
                self._handler(m),
                request_deserializer=EchoRequest.FromString,
                response_serializer=EchoResponse.SerializeToString,
            )
            for m in ("Echo", "EchoTwo")  # EchoThree: left unimplemented, as in echo-basic
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.server.add_insecure_port(f"{ip}:{port}")

    def _handler(self, method: str) -> Any:
        async def echo(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = list(context.invocation_metadata() or ())
            authority = next((str(v) for k, v in metadata if k == ":authority"), "")
            resp = EchoResponse()
            a = resp.assertions
            a.fully_qualified_method = full_method(method)
            for key, value in metadata:
                a.headers.add(key=key, value=str(value))
            a.authority = authority
            a.context.namespace = self.context.namespace
            a.context.pod = self.context.pod
            return resp

        return echo

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(grace=None)


@dataclass
class RpcResult:
    code: grpc.StatusCode
    response: Any | None = None


async def send_rpc(
    channel: grpc.aio.Channel,
    method: str,
    metadata: dict[str, str],
    timeout: float,  # noqa: ASYNC109
) -> RpcResult:
    """DefaultClient.SendRPC on an open channel: the status code, and the response when OK."""
    call = channel.unary_unary(
        full_method(method),
        request_serializer=EchoRequest.SerializeToString,
        response_deserializer=EchoResponse.FromString,
    )
    try:
        resp = await call(
            EchoRequest(), metadata=tuple((k.lower(), v) for k, v in metadata.items()), timeout=timeout
        )
    except grpc.aio.AioRpcError as exc:
        return RpcResult(exc.code())
    return RpcResult(grpc.StatusCode.OK, resp)


def channel(address: str, authority: str = "") -> grpc.aio.Channel:
    """grpc.NewClient with insecure credentials and, when the request names one, WithAuthority."""
    options = [("grpc.default_authority", authority)] if authority else []
    return grpc.aio.insecure_channel(address, options=options)
