"""Hand-written protobuf wire codec for the few xDS envelope messages the server handles.

Resources arrive pre-serialized (Resource.body), so a response is byte concatenation: no betterproto2 on the
hot path. Field numbers follow envoy/service/discovery/v3/discovery.proto (checked against envoy_data_plane):

    DiscoveryRequest       1 version_info, 2 node, 3 resource_names, 4 type_url, 5 response_nonce,
                           6 error_detail
    DiscoveryResponse      1 version_info, 2 resources (Any), 4 type_url, 5 nonce
    DeltaDiscoveryRequest  1 node, 2 type_url, 3 subscribe, 4 unsubscribe, 5 initial_resource_versions (map),
                           6 response_nonce, 7 error_detail
    DeltaDiscoveryResponse 1 system_version_info, 2 resources (Resource), 4 type_url, 5 nonce,
                           6 removed_resources
    Resource               1 version, 2 resource (Any), 3 name
    Any                    1 type_url, 2 value          google.rpc.Status  1 code, 2 message

and the SDS Secret with inline PEM (envoy/extensions/transport_sockets/tls/v3, core/v3/base.proto), so the
agent serves its Envoy without the generated Envoy protos (~0.5 s of imports on its start path):

    Secret                 1 name, 2 tls_certificate, 4 validation_context
    TlsCertificate         1 certificate_chain, 2 private_key
    CertificateValidationContext 1 trusted_ca           DataSource 2 inline_bytes
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from xds.cache.snapshot import Resource


class CodecError(ValueError):
    """Bytes that are not a valid message of the expected type; the message names the field."""


# ---------------------------------------------------------------- primitives


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def _str_field(tag: int, text: str) -> bytes:
    return _len_field(tag, text.encode()) if text else b""


def _read_varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise CodecError(f"{where}: truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CodecError(f"{where}: varint too long")


def _fields(data: bytes, where: str) -> Iterable[tuple[int, int, int | bytes]]:
    """Yield (field_number, wire_type, value): int for varint/fixed, bytes for length-delimited."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise CodecError(f"{where}: field number 0 is invalid")
        if wire == 0:
            value, pos = _read_varint(data, pos, f"{where}.{number}")
            yield number, wire, value
        elif wire == 2:
            length, pos = _read_varint(data, pos, f"{where}.{number}")
            if pos + length > end:
                raise CodecError(f"{where}: field {number} runs past the end of the message")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire == 1:
            if pos + 8 > end:
                raise CodecError(f"{where}: truncated fixed64 field {number}")
            yield number, wire, int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise CodecError(f"{where}: truncated fixed32 field {number}")
            yield number, wire, int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise CodecError(f"{where}: unsupported wire type {wire} for field {number}")


def _text(value: int | bytes, where: str) -> str:
    if not isinstance(value, bytes):
        raise CodecError(f"{where}: expected a string")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise CodecError(f"{where}: not valid UTF-8") from None


def _blob(value: int | bytes, where: str) -> bytes:
    if not isinstance(value, bytes):
        raise CodecError(f"{where}: expected a length-delimited message")
    return value


# ---------------------------------------------------------------- requests


@dataclass(slots=True)
class ErrorDetail:
    """google.rpc.Status as Envoy sends it in a NACK."""

    code: int = 0
    message: str = ""


@dataclass(slots=True)
class SotwRequest:
    version_info: str = ""
    node: bytes | None = None  # raw Node bytes; parsed with betterproto2 only on the first message
    resource_names: list[str] = field(default_factory=list)
    type_url: str = ""
    response_nonce: str = ""
    error_detail: ErrorDetail | None = None


@dataclass(slots=True)
class DeltaRequest:
    node: bytes | None = None
    type_url: str = ""
    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    initial_resource_versions: dict[str, str] = field(default_factory=dict)
    response_nonce: str = ""
    error_detail: ErrorDetail | None = None


def _decode_status(data: bytes, where: str) -> ErrorDetail:
    detail = ErrorDetail()
    for number, _, value in _fields(data, where):
        if number == 1:
            if not isinstance(value, int):
                raise CodecError(f"{where}.code: expected an integer")
            detail.code = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 2:
            detail.message = _text(value, f"{where}.message")
    return detail


def decode_sotw_request(data: bytes) -> SotwRequest:
    """Decode a DiscoveryRequest; raises CodecError naming the bad field.

    SotW ACKs repeat every subscribed name (1,000+ route tables with scoped routing), so well-formed
    requests are parsed by protobuf's C parser (upb) through a wire-compatible stand-in message; anything
    it does not take cleanly goes through the field-by-field decoder, which names what is wrong."""
    fast = _fast_sotw_request(data)
    return fast if fast is not None else _decode_sotw_request(data)


@cache
def _lite_messages() -> tuple[Any, Any]:
    """(DiscoveryRequest, google.rpc.Status) stand-ins: the same field numbers and wire types, with the Node
    kept as raw bytes (it is parsed once per stream, elsewhere)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="mecha_xds_lite.proto", package="mecha.lite", syntax="proto3"
    )
    fields = {
        "DiscoveryRequest": [
            ("version_info", 1, proto.TYPE_STRING, proto.LABEL_OPTIONAL),
            ("node", 2, proto.TYPE_BYTES, proto.LABEL_OPTIONAL),
            ("resource_names", 3, proto.TYPE_STRING, proto.LABEL_REPEATED),
            ("type_url", 4, proto.TYPE_STRING, proto.LABEL_OPTIONAL),
            ("response_nonce", 5, proto.TYPE_STRING, proto.LABEL_OPTIONAL),
            ("error_detail", 6, proto.TYPE_BYTES, proto.LABEL_OPTIONAL),
        ],
        "Status": [("code", 1, proto.TYPE_INT32, proto.LABEL_OPTIONAL)],
    }
    for name, spec in fields.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, label in spec:
            added = message.field.add(name=field_name, number=number, type=kind, label=label)
            if field_name in ("node", "error_detail"):  # presence matters (an empty Status is a NACK)
                added.proto3_optional = True
                added.oneof_index = len(message.oneof_decl)
                message.oneof_decl.add(name=f"_{field_name}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request, status = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"mecha.lite.{n}")) for n in fields
    )
    return request, status


def _fast_sotw_request(data: bytes) -> SotwRequest | None:
    from google.protobuf.message import DecodeError
    from google.protobuf.unknown_fields import UnknownFieldSet

    request_cls, _ = _lite_messages()
    try:
        msg = request_cls.FromString(data)
    except DecodeError:
        return None
    if len(UnknownFieldSet(msg)):
        return None  # a known field with another wire type, or an unknown one: let the slow path judge
    req = SotwRequest(
        version_info=msg.version_info,
        resource_names=list(msg.resource_names),
        type_url=msg.type_url,
        response_nonce=msg.response_nonce,
    )
    if msg.HasField("node"):
        req.node = msg.node
    if msg.HasField("error_detail"):
        req.error_detail = _decode_status(msg.error_detail, "DiscoveryRequest.error_detail")
    return req


def _decode_sotw_request(data: bytes) -> SotwRequest:
    req = SotwRequest()
    w = "DiscoveryRequest"
    for number, _, value in _fields(data, w):
        if number == 1:
            req.version_info = _text(value, f"{w}.version_info")
        elif number == 2:
            req.node = _blob(value, f"{w}.node")
        elif number == 3:
            req.resource_names.append(_text(value, f"{w}.resource_names"))
        elif number == 4:
            req.type_url = _text(value, f"{w}.type_url")
        elif number == 5:
            req.response_nonce = _text(value, f"{w}.response_nonce")
        elif number == 6:
            req.error_detail = _decode_status(_blob(value, f"{w}.error_detail"), f"{w}.error_detail")
    return req


def decode_delta_request(data: bytes) -> DeltaRequest:
    """Decode a DeltaDiscoveryRequest; raises CodecError naming the bad field."""
    req = DeltaRequest()
    w = "DeltaDiscoveryRequest"
    for number, _, value in _fields(data, w):
        if number == 1:
            req.node = _blob(value, f"{w}.node")
        elif number == 2:
            req.type_url = _text(value, f"{w}.type_url")
        elif number == 3:
            req.subscribe.append(_text(value, f"{w}.resource_names_subscribe"))
        elif number == 4:
            req.unsubscribe.append(_text(value, f"{w}.resource_names_unsubscribe"))
        elif number == 5:
            key = val = ""
            entry_where = f"{w}.initial_resource_versions"
            for n2, _, v2 in _fields(_blob(value, entry_where), entry_where):
                if n2 == 1:
                    key = _text(v2, entry_where + ".key")
                elif n2 == 2:
                    val = _text(v2, entry_where + ".value")
            req.initial_resource_versions[key] = val
        elif number == 6:
            req.response_nonce = _text(value, f"{w}.response_nonce")
        elif number == 7:
            req.error_detail = _decode_status(_blob(value, f"{w}.error_detail"), f"{w}.error_detail")
    return req


def _encode_status(detail: ErrorDetail) -> bytes:
    code = b"\x08" + _varint(detail.code & 0xFFFFFFFFFFFFFFFF) if detail.code else b""
    return code + _str_field(0x12, detail.message)


def encode_names(names: Iterable[str]) -> bytes:
    """DiscoveryRequest.resource_names, encoded (a fake proxy re-sends the same 1,000 names per ACK)."""
    return b"".join(_len_field(0x1A, name.encode()) for name in names)


def encode_sotw_request(req: SotwRequest, names_blob: bytes | None = None) -> bytes:
    """Encode a DiscoveryRequest (used by the fake proxy and tests); names_blob = encode_names(names)."""
    parts = [_str_field(0x0A, req.version_info)]
    if req.node is not None:
        parts.append(_len_field(0x12, req.node))
    parts.append(encode_names(req.resource_names) if names_blob is None else names_blob)
    parts.append(_str_field(0x22, req.type_url))
    parts.append(_str_field(0x2A, req.response_nonce))
    if req.error_detail is not None:
        parts.append(_len_field(0x32, _encode_status(req.error_detail)))
    return b"".join(parts)


def encode_delta_request(req: DeltaRequest) -> bytes:
    """Encode a DeltaDiscoveryRequest (used by the fake proxy and tests)."""
    parts = []
    if req.node is not None:
        parts.append(_len_field(0x0A, req.node))
    parts.append(_str_field(0x12, req.type_url))
    parts.extend(_len_field(0x1A, name.encode()) for name in req.subscribe)
    parts.extend(_len_field(0x22, name.encode()) for name in req.unsubscribe)
    for key, val in req.initial_resource_versions.items():
        parts.append(_len_field(0x2A, _str_field(0x0A, key) + _str_field(0x12, val)))
    parts.append(_str_field(0x32, req.response_nonce))
    if req.error_detail is not None:
        parts.append(_len_field(0x3A, _encode_status(req.error_detail)))
    return b"".join(parts)


# ---------------------------------------------------------------- responses


def encode_any(type_url: str, body: bytes) -> bytes:
    """google.protobuf.Any payload (without its own field tag)."""
    return _str_field(0x0A, type_url) + (_len_field(0x12, body) if body else b"")


# ---- per-resource pieces, encoded once and shared by every stream and response that carries the resource


class _PieceCache:
    """Resource -> its encoded piece of a response (field tag included), for as long as the Resource lives.

    A resource is wrapped (Any, and for delta the Resource envelope) once, not once per stream: a push of a
    600 KB RouteConfiguration to 100 proxies then costs one wrap plus one concatenation per stream. Keyed by
    object identity (the translator shares one Resource object across proxies), so large bodies are never
    hashed or compared; a weak reference drops the entry when the Resource is freed, so the cache holds
    pieces of live resources only.
    """

    def __init__(self) -> None:
        self._pieces: dict[int, tuple[weakref.ref[Resource], bytes]] = {}
        self.size = 0

    def get(self, res: Resource, wrap: Callable[[Resource], bytes]) -> bytes:
        key = id(res)
        found = self._pieces.get(key)
        if found is not None and found[0]() is res:
            return found[1]
        piece = wrap(res)
        self._pieces[key] = (weakref.ref(res, functools.partial(self._drop, key)), piece)
        self.size += len(piece)
        return piece

    def _drop(self, key: int, ref: weakref.ref[Resource]) -> None:
        found = self._pieces.get(key)
        if found is not None and found[0] is ref:
            del self._pieces[key]
            self.size -= len(found[1])

    def __len__(self) -> int:
        return len(self._pieces)


sotw_pieces = _PieceCache()
delta_pieces = _PieceCache()


def _any_field(type_url: str, body: bytes) -> bytes:
    type_field = _str_field(0x0A, type_url)
    return type_field + _len_field(0x12, body) if body else type_field


def _sotw_piece(res: Resource) -> bytes:
    """DiscoveryResponse.resources entry (field 2, an Any)."""
    return _len_field(0x12, _any_field(res.type_url, res.body))


def _delta_piece(res: Resource) -> bytes:
    """DeltaDiscoveryResponse.resources entry (field 2, a Resource: version, Any, name)."""
    wrapped = _str_field(0x0A, res.version) + _len_field(0x12, _any_field(res.type_url, res.body))
    return _len_field(0x12, wrapped + _str_field(0x1A, res.name))


def encode_sotw_response(
    version_info: str, type_url: str, nonce: str, resources: Iterable[Resource]
) -> bytes:
    """DiscoveryResponse from pre-serialized resources (each wrapped once, see _PieceCache)."""
    parts = [_str_field(0x0A, version_info)]
    for res in resources:
        if res.type_url == type_url:
            parts.append(sotw_pieces.get(res, _sotw_piece))
        else:  # never shared with a response of the resource's own type: wrap as asked
            parts.append(_len_field(0x12, _any_field(type_url, res.body)))
    parts.append(_str_field(0x22, type_url))
    parts.append(_str_field(0x2A, nonce))
    return b"".join(parts)


def encode_delta_response(
    system_version_info: str,
    type_url: str,
    nonce: str,
    resources: Sequence[Resource],
    removed: Sequence[str] = (),
) -> bytes:
    """DeltaDiscoveryResponse from pre-serialized resources (+ removed names)."""
    parts = [_str_field(0x0A, system_version_info)]
    for res in resources:
        if res.type_url == type_url:
            parts.append(delta_pieces.get(res, _delta_piece))
        else:
            wrapped = _str_field(0x0A, res.version) + _len_field(0x12, _any_field(type_url, res.body))
            parts.append(_len_field(0x12, wrapped + _str_field(0x1A, res.name)))
    parts.append(_str_field(0x22, type_url))
    parts.append(_str_field(0x2A, nonce))
    parts.extend(_len_field(0x32, name.encode()) for name in removed)
    return b"".join(parts)


def encode_delta_response_without_nonce(
    system_version_info: str, type_url: str, resources: Sequence[Resource], removed: Sequence[str] = ()
) -> bytes:
    """encode_delta_response minus its nonce: the part many streams share (the first full response of every
    proxy with the same view); a stream appends nonce_field(its nonce): protobuf fields come in any order."""
    whole = encode_delta_response(system_version_info, type_url, "", resources)
    return whole + b"".join(_len_field(0x32, name.encode()) for name in removed)


def nonce_field(nonce: str) -> bytes:
    """The nonce field (5) of a DiscoveryResponse / DeltaDiscoveryResponse."""
    return _str_field(0x2A, nonce)


# ---- SDS secrets


def _inline_bytes(data: bytes) -> bytes:
    """DataSource{inline_bytes}: a oneof member, so written even when empty (as betterproto2 does)."""
    return _len_field(0x12, data)


def encode_tls_certificate_secret(name: str, chain_pem: bytes, key_pem: bytes) -> bytes:
    """Secret{name, tls_certificate{certificate_chain, private_key}} with inline PEM (SDS `default`)."""
    certificate = _len_field(0x0A, _inline_bytes(chain_pem)) + _len_field(0x12, _inline_bytes(key_pem))
    return _str_field(0x0A, name) + _len_field(0x12, certificate)


def encode_validation_context_secret(name: str, trusted_ca_pem: bytes) -> bytes:
    """Secret{name, validation_context{trusted_ca}} with inline PEM (SDS `ROOTCA`)."""
    return _str_field(0x0A, name) + _len_field(0x22, _len_field(0x0A, _inline_bytes(trusted_ca_pem)))


@dataclass(slots=True)
class DecodedResource:
    name: str
    version: str
    type_url: str
    body: bytes


@dataclass(slots=True)
class DecodedResponse:
    """Either flavour of response, decoded (for the fake proxy and tests)."""

    version_info: str = ""
    type_url: str = ""
    nonce: str = ""
    resources: list[DecodedResource] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _decode_any(data: bytes, where: str) -> tuple[str, bytes]:
    type_url, body = "", b""
    for number, _, value in _fields(data, where):
        if number == 1:
            type_url = _text(value, where + ".type_url")
        elif number == 2:
            body = _blob(value, where + ".value")
    return type_url, body


def decode_sotw_response(data: bytes) -> DecodedResponse:
    """Decode a DiscoveryResponse; resource names are not in the envelope (callers derive them)."""
    out = DecodedResponse()
    w = "DiscoveryResponse"
    for number, _, value in _fields(data, w):
        if number == 1:
            out.version_info = _text(value, w + ".version_info")
        elif number == 2:
            type_url, body = _decode_any(_blob(value, w + ".resources"), w + ".resources")
            out.resources.append(DecodedResource("", "", type_url, body))
        elif number == 4:
            out.type_url = _text(value, w + ".type_url")
        elif number == 5:
            out.nonce = _text(value, w + ".nonce")
    return out


def decode_delta_response(data: bytes) -> DecodedResponse:
    """Decode a DeltaDiscoveryResponse."""
    out = DecodedResponse()
    w = "DeltaDiscoveryResponse"
    for number, _, value in _fields(data, w):
        if number == 1:
            out.version_info = _text(value, w + ".system_version_info")
        elif number == 2:
            res = DecodedResource("", "", "", b"")
            for n2, _, v2 in _fields(_blob(value, w + ".resources"), w + ".resources"):
                if n2 == 1:
                    res.version = _text(v2, w + ".resources.version")
                elif n2 == 2:
                    res.type_url, res.body = _decode_any(
                        _blob(v2, w + ".resources"), w + ".resources.resource"
                    )
                elif n2 == 3:
                    res.name = _text(v2, w + ".resources.name")
            out.resources.append(res)
        elif number == 4:
            out.type_url = _text(value, w + ".type_url")
        elif number == 5:
            out.nonce = _text(value, w + ".nonce")
        elif number == 6:
            out.removed.append(_text(value, w + ".removed_resources"))
    return out


def first_string_field(body: bytes) -> str:
    """Field 1 of a resource body: the name of a Cluster, Listener, RouteConfiguration, Secret and the
    cluster_name of a ClusterLoadAssignment (all field 1, string). Lets SotW clients name resources."""
    return string_field(body, 1)


def string_field(body: bytes, field: int) -> str:
    """The first value of a string field of a serialized message ("" when absent)."""
    for number, wire, value in _fields(body, "resource"):
        if number == field and wire == 2 and isinstance(value, bytes):
            return value.decode(errors="replace")
    return ""
