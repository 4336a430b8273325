"""Builders for scripted protocol tests: fake resources (opaque bodies), requests, response decoding."""

from __future__ import annotations

from xds import types
from xds.cache.snapshot import Resource, Snapshot
from xds.server.codec import (
    DecodedResponse,
    DeltaRequest,
    ErrorDetail,
    SotwRequest,
    decode_delta_response,
    decode_sotw_response,
    first_string_field,
)
from xds.server.state import Action, Send

C, E, L, R, S = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE, types.SECRET


def res(type_url: str, name: str, content: str = "") -> Resource:
    body = b"\x0a" + bytes([len(name)]) + name.encode() + (b"\x12" + bytes([len(content)]) + content.encode())
    return Resource.make(type_url, name, body)


def snap(spec: dict[str, dict[str, str]], changed_at: float = 0.0) -> Snapshot:
    """snap({C: {"a": "v1"}, E: {"a": "ep1"}}) -> Snapshot; the string is the resource's content."""
    return Snapshot.build(
        [res(t, name, content) for t, items in spec.items() for name, content in items.items()], changed_at
    )


def sreq(
    type_url: str,
    names: list[str] | None = None,
    version: str = "",
    nonce: str = "",
    error: str | None = None,
    node: bytes | None = None,
) -> SotwRequest:
    return SotwRequest(
        version_info=version,
        node=node,
        resource_names=list(names or []),
        type_url=type_url,
        response_nonce=nonce,
        error_detail=ErrorDetail(13, error) if error is not None else None,
    )


def dreq(
    type_url: str,
    sub: list[str] | None = None,
    unsub: list[str] | None = None,
    nonce: str = "",
    error: str | None = None,
    initial: dict[str, str] | None = None,
) -> DeltaRequest:
    return DeltaRequest(
        type_url=type_url,
        subscribe=list(sub or []),
        unsubscribe=list(unsub or []),
        initial_resource_versions=dict(initial or {}),
        response_nonce=nonce,
        error_detail=ErrorDetail(13, error) if error is not None else None,
    )


def sends(actions: list[Action]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def sotw_names(send: Send) -> list[str]:
    return [first_string_field(r.body) for r in decode_sotw_response(send.payload).resources]


def delta_decoded(send: Send) -> DecodedResponse:
    return decode_delta_response(send.payload)


def delta_names(send: Send) -> tuple[list[str], list[str]]:
    d = decode_delta_response(send.payload)
    return [r.name for r in d.resources], d.removed
