"""The node a scaled replica's Envoy runs as: `<proxy id>.<instance>` at the address its container has now.

Replicas of one compose service share one bootstrap and one credential (issued with --instances and the
network's CIDR). The agent beside each Envoy names it by its container's host name and puts the address of
the interface that routes to the control plane into node.metadata.mecha.address (istio-agent's INSTANCE_IP),
so `--scale` and a recreated container with a new IP need no edit. The control plane still checks both
against the credential (xds/identity/authenticator.py): the agent claims nothing the credential does not name.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from google.protobuf import struct_pb2

from xds.identity.credential import Credential, node_id_of

# field numbers (envoy/service/discovery/v3/discovery.proto, envoy/config/core/v3/base.proto)
SOTW_NODE, DELTA_NODE = 2, 1
NODE_ID, NODE_METADATA = 1, 3


@dataclass(frozen=True, slots=True)
class NodeRewrite:
    node_id: str
    address: str


def route_address(control_plane: str) -> str:
    """The local address the kernel picks to reach the control plane (a UDP connect sends nothing).
    control_plane: host:port, or several comma-separated (replicas: the first one decides)."""
    first = control_plane.split(",")[0].strip().removeprefix("dns:///")  # a dns:/// name: its host
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"control plane {first!r}: expected HOST:PORT")
    problem: OSError | None = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(
        host.strip("[]"), int(port), type=socket.SOCK_DGRAM
    ):
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.connect(sockaddr)
                return str(probe.getsockname()[0])
        except OSError as exc:
            problem = exc
    raise OSError(f"control plane {first!r}: no route from this host ({problem})")


def rewrite_for(cred: Credential, control_plane: str, hostname: str | None = None) -> NodeRewrite | None:
    """What to put into the node of an instance credential's streams; None: the bootstrap's node as is."""
    if not cred.instances:
        return None
    return NodeRewrite(node_id_of(cred, hostname or socket.gethostname()), route_address(control_plane))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _spans(data: bytes) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each top-level field; payload of wire type 2 is the tail."""
    out, pos = [], 0
    while pos < len(data):
        start = pos
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
        if pos > len(data):
            raise ValueError(f"field {number} runs past the end of the message")
        out.append((number, wire, start, pos))
    return out


def _payload(data: bytes, start: int) -> bytes:
    _, pos = _read_varint(data, start)
    length, pos = _read_varint(data, pos)
    return data[pos : pos + length]


def _field(data: bytes, wanted: int) -> bytes:
    return next((_payload(data, s) for n, w, s, _ in _spans(data) if n == wanted and w == 2), b"")


def _replace_fields(data: bytes, replace: dict[int, bytes]) -> bytes:
    """The message with each length-delimited field in `replace` set to the given payload (appended when it
    is missing), every other field kept byte for byte."""
    out, done = bytearray(), set()
    for number, wire, start, end in _spans(data):
        if number in replace and wire == 2:
            if number not in done:
                out += _varint(number << 3 | 2) + _varint(len(replace[number])) + replace[number]
                done.add(number)
            continue
        out += data[start:end]
    for number, payload in replace.items():
        if number not in done:
            out += _varint(number << 3 | 2) + _varint(len(payload)) + payload
    return bytes(out)


def rewrite_node(node: bytes, rewrite: NodeRewrite) -> bytes:
    """Node with id and metadata.mecha.address replaced; everything else kept."""
    metadata = struct_pb2.Struct()
    metadata.ParseFromString(_field(node, NODE_METADATA))
    metadata.fields["mecha"].struct_value.fields["address"].string_value = rewrite.address
    return _replace_fields(
        node, {NODE_ID: rewrite.node_id.encode(), NODE_METADATA: metadata.SerializeToString()}
    )


def rewrite_request(request: bytes, node_field: int, rewrite: NodeRewrite) -> bytes:
    """A DiscoveryRequest (node_field 2) or DeltaDiscoveryRequest (1) with its node, if any, rewritten."""
    node = _field(request, node_field)
    if not node:
        return request  # Envoy sends the node on the first request only
    return _replace_fields(request, {node_field: rewrite_node(node, rewrite)})


async def rewritten(
    requests: AsyncIterator[bytes], node_field: int, rewrite: NodeRewrite
) -> AsyncIterator[bytes]:
    async for request in requests:
        yield rewrite_request(request, node_field, rewrite)
