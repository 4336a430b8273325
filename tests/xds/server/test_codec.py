"""The hand-written codec against betterproto2 (envoy_data_plane): table and seeded random round trips."""

from __future__ import annotations

import random

import pytest
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.service.discovery import v3 as disc
from envoy_data_plane.google.protobuf import Any
from envoy_data_plane.google.rpc import Status

from xds import types
from xds.cache.snapshot import Resource
from xds.server import codec

NAMES = ["", "a", "outbound|80||reviews.default.svc.cluster.local", "ünïcode", "x" * 300]


def _rand_text(rng: random.Random) -> str:
    return "".join(rng.choice("abc/|.:é_-0") for _ in range(rng.choice([0, 1, 5, 200])))


def _rand_names(rng: random.Random) -> list[str]:
    return [_rand_text(rng) or "n" for _ in range(rng.choice([0, 1, 3, 150]))]


@pytest.mark.parametrize("seed", range(40))
def test_sotw_request_decodes_like_betterproto2(seed: int) -> None:
    rng = random.Random(seed)
    msg = disc.DiscoveryRequest(
        version_info=_rand_text(rng),
        node=core.Node(id=_rand_text(rng), cluster="c") if rng.random() < 0.5 else None,
        resource_names=_rand_names(rng),
        type_url=rng.choice(types.TYPE_ORDER),
        response_nonce=str(rng.randint(0, 10**12)) if rng.random() < 0.7 else "",
        error_detail=Status(code=rng.choice([0, 13, 3]), message=_rand_text(rng))
        if rng.random() < 0.3
        else None,
    )
    got = codec.decode_sotw_request(bytes(msg))
    assert got.version_info == msg.version_info
    assert got.resource_names == msg.resource_names
    assert got.type_url == msg.type_url and got.response_nonce == msg.response_nonce
    if msg.node is None:
        assert got.node is None
    else:
        assert got.node is not None and core.Node.parse(got.node).id == msg.node.id
    if msg.error_detail is None:
        assert got.error_detail is None
    else:
        assert got.error_detail is not None
        assert (got.error_detail.code, got.error_detail.message) == (
            msg.error_detail.code,
            msg.error_detail.message,
        )
    # and back: our encoder's bytes parse to the same message
    again = disc.DiscoveryRequest.parse(codec.encode_sotw_request(got))
    assert again.resource_names == msg.resource_names and again.version_info == msg.version_info
    assert again.error_detail == msg.error_detail


@pytest.mark.parametrize("seed", range(40))
def test_delta_request_decodes_like_betterproto2(seed: int) -> None:
    rng = random.Random(1000 + seed)
    msg = disc.DeltaDiscoveryRequest(
        node=core.Node(id="p") if rng.random() < 0.5 else None,
        type_url=rng.choice(types.TYPE_ORDER),
        resource_names_subscribe=_rand_names(rng),
        resource_names_unsubscribe=_rand_names(rng),
        initial_resource_versions={
            _rand_text(rng) or "k": _rand_text(rng) for _ in range(rng.choice([0, 2, 50]))
        },
        response_nonce=str(rng.randint(0, 99)),
        error_detail=Status(code=13, message=_rand_text(rng)) if rng.random() < 0.3 else None,
    )
    got = codec.decode_delta_request(bytes(msg))
    assert got.subscribe == msg.resource_names_subscribe
    assert got.unsubscribe == msg.resource_names_unsubscribe
    assert got.initial_resource_versions == msg.initial_resource_versions
    assert got.type_url == msg.type_url and got.response_nonce == msg.response_nonce
    assert (got.error_detail is None) == (msg.error_detail is None)
    again = disc.DeltaDiscoveryRequest.parse(codec.encode_delta_request(got))
    assert again.initial_resource_versions == msg.initial_resource_versions
    assert again.resource_names_subscribe == msg.resource_names_subscribe


@pytest.mark.parametrize("count", [0, 1, 7, 300])
def test_sotw_response_parses_with_betterproto2(count: int) -> None:
    rng = random.Random(count)
    resources = [
        Resource.make(types.CLUSTER, f"c{i}", rng.randbytes(rng.choice([0, 3, 200, 70000])))
        for i in range(count)
    ]
    payload = codec.encode_sotw_response("v1", types.CLUSTER, "42", resources)
    msg = disc.DiscoveryResponse.parse(payload)
    assert (msg.version_info, msg.type_url, msg.nonce) == ("v1", types.CLUSTER, "42")
    assert [(a.type_url, a.value) for a in msg.resources] == [(types.CLUSTER, r.body) for r in resources]
    assert payload == bytes(
        disc.DiscoveryResponse(
            version_info="v1",
            type_url=types.CLUSTER,
            nonce="42",
            resources=[Any(type_url=types.CLUSTER, value=r.body) for r in resources],
        )
    )
    decoded = codec.decode_sotw_response(payload)
    assert [r.body for r in decoded.resources] == [r.body for r in resources]


@pytest.mark.parametrize("name", NAMES)
def test_delta_response_parses_with_betterproto2(name: str) -> None:
    res = [Resource.make(types.ROUTE, name or "r", b"\x0a\x01r"), Resource.make(types.ROUTE, "other", b"")]
    payload = codec.encode_delta_response("sys", types.ROUTE, "7", res, removed=["gone", name or "x"])
    msg = disc.DeltaDiscoveryResponse.parse(payload)
    assert (msg.system_version_info, msg.type_url, msg.nonce) == ("sys", types.ROUTE, "7")
    assert [(r.name, r.version, r.resource.value) for r in msg.resources] == [
        (r.name, r.version, r.body) for r in res
    ]
    assert all(r.resource.type_url == types.ROUTE for r in msg.resources)
    assert msg.removed_resources == ["gone", name or "x"]
    back = codec.decode_delta_response(payload)
    assert [(r.name, r.version, r.body) for r in back.resources] == [(r.name, r.version, r.body) for r in res]


def test_first_string_field_is_the_resource_name() -> None:
    from xds.testing.resources import cluster, endpoints, http_listener, route_config

    for res in (
        cluster("c1"),
        endpoints("c1", [1]),
        http_listener("l1", 1, "r"),
        route_config("r1", [("/", "c")]),
    ):
        assert codec.first_string_field(res.body) == res.name


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x22\x05ab", "runs past the end"),  # type_url length 5, 2 bytes present
        (b"\x0a", "truncated varint"),
        (b"\x0f", "unsupported wire type"),
        (b"\x22\x02\xff\xfe", "type_url: not valid UTF-8"),
        (b"\x00\x01", "field number 0"),
        (b"\x32\x03\x08\x80\x80", "error_detail.1: truncated varint"),
    ],
)
def test_garbage_raises_codec_error_naming_the_field(data: bytes, field: str) -> None:
    with pytest.raises(codec.CodecError, match=field):
        codec.decode_sotw_request(data)


def test_garbage_delta_raises_codec_error() -> None:
    with pytest.raises(codec.CodecError, match="DeltaDiscoveryRequest"):
        codec.decode_delta_request(b"\x1a\xff\xff\xff\xff\x0f")


def test_unknown_fields_are_skipped() -> None:
    # field 7 (resource_locators) and field 99 varint are ignored; type_url still read
    data = b"\x3a\x00" + b"\x98\x06\x01" + b"\x22\x01t"
    assert codec.decode_sotw_request(data).type_url == "t"
