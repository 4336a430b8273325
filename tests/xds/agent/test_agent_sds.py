"""The agent's SDS server without the generated Envoy protos (docs/benchmarks.md, sidecar start-up with the
agent): its Secrets are the bytes betterproto2 encodes, and Envoy's streams get them, rotated, NACKs logged,
another proxy's node refused, a reconnecting Envoy answered at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls

from xds import types
from xds.agent.certs import WorkloadCert
from xds.agent.sds import SDS_SERVICE, SdsServer, secrets_snapshot
from xds.ca import workload
from xds.ca.secrets import ROOT_SECRET, WORKLOAD_SECRET
from xds.server.codec import (
    DeltaRequest,
    ErrorDetail,
    SotwRequest,
    decode_delta_response,
    decode_sotw_response,
    encode_delta_request,
    encode_sotw_request,
)
from xds.testing.fake_proxy import node_bytes

pytestmark = pytest.mark.timeout(60)
PROXY = "reviews-v1"
STREAM = f"/{SDS_SERVICE}/StreamSecrets"
DELTA = f"/{SDS_SERVICE}/DeltaSecrets"


def _cert(serial: int) -> WorkloadCert:
    now = datetime.now(UTC)
    return WorkloadCert(
        key_pem=b"-----BEGIN PRIVATE KEY-----\nkey %d\n-----END PRIVATE KEY-----\n" % serial,
        chain_pem=b"-----BEGIN CERTIFICATE-----\nleaf %d\n-----END CERTIFICATE-----\n" % serial,
        root_pem=b"-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n",
        not_before=now,
        not_after=now,
    )


def _betterproto_secrets(cert: WorkloadCert) -> dict[str, bytes]:
    """The same Secrets built with envoy-data-plane, as the agent and xds/ca/workload.py did before."""
    default = tls.Secret(
        name=WORKLOAD_SECRET,
        tls_certificate=tls.TlsCertificate(
            certificate_chain=core.DataSource(inline_bytes=cert.chain_pem),
            private_key=core.DataSource(inline_bytes=cert.key_pem),
        ),
    )
    root = tls.Secret(
        name=ROOT_SECRET,
        validation_context=tls.CertificateValidationContext(
            trusted_ca=core.DataSource(inline_bytes=cert.root_pem)
        ),
    )
    return {WORKLOAD_SECRET: bytes(default), ROOT_SECRET: bytes(root)}


def test_secrets_are_the_bytes_betterproto_encodes() -> None:
    # the control plane's CA (xds/ca/workload.py) builds the same Secrets through the same functions
    assert workload.root_secret(_cert(1).root_pem).body == _betterproto_secrets(_cert(1))[ROOT_SECRET]
    for cert in (_cert(1), WorkloadCert(b"", b"", b"", datetime.now(UTC), datetime.now(UTC))):
        served = {name: res.body for name, res in secrets_snapshot(cert).of(types.SECRET).items()}
        assert served == _betterproto_secrets(cert)
    parsed = tls.Secret.parse(secrets_snapshot(_cert(2)).of(types.SECRET)[WORKLOAD_SECRET].body)
    assert parsed.tls_certificate is not None and parsed.tls_certificate.private_key is not None
    assert parsed.tls_certificate.private_key.inline_bytes == _cert(2).key_pem


class _Envoy:
    """One SDS stream as Envoy opens it: requests in, raw responses out."""

    def __init__(self, channel: grpc.aio.Channel, method: str = STREAM) -> None:
        self.requests: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.call = channel.stream_stream(method)(self._send())

    async def _send(self) -> AsyncIterator[bytes]:
        while (request := await self.requests.get()) is not None:
            yield request

    def ask(self, names: list[str], node: str | None = None, nonce: str = "", version: str = "",
            error: str | None = None) -> None:  # fmt: skip
        detail = ErrorDetail(13, error) if error is not None else None
        request = SotwRequest(version, node_bytes(node) if node else None, names, types.SECRET, nonce, detail)
        self.requests.put_nowait(encode_sotw_request(request))

    async def response(self) -> tuple[str, str, dict[str, bytes]]:
        raw = await asyncio.wait_for(self.call.read(), 5)
        assert isinstance(raw, bytes), raw
        got = decode_sotw_response(raw)
        return got.version_info, got.nonce, {tls.Secret.parse(r.body).name: r.body for r in got.resources}


@pytest.fixture
async def sds(tmp_path: Path) -> AsyncIterator[tuple[SdsServer, grpc.aio.Channel]]:
    server = SdsServer(PROXY)
    server.publish(_cert(1))
    await server.start(str(tmp_path / "sds.sock"))
    channel = grpc.aio.insecure_channel(f"unix:{tmp_path / 'sds.sock'}")
    try:
        yield server, channel
    finally:
        await channel.close()
        await server.stop()


async def test_envoy_gets_each_secret_then_the_rotated_one(sds: tuple[SdsServer, grpc.aio.Channel]) -> None:
    server, channel = sds
    default, root = _Envoy(channel), _Envoy(channel)
    default.ask([WORKLOAD_SECRET], PROXY)
    root.ask([ROOT_SECRET], PROXY)
    version, nonce, got = await default.response()
    assert got == {WORKLOAD_SECRET: _betterproto_secrets(_cert(1))[WORKLOAD_SECRET]}
    _, _, got_root = await root.response()
    assert got_root == {ROOT_SECRET: _betterproto_secrets(_cert(1))[ROOT_SECRET]}
    default.ask([WORKLOAD_SECRET], nonce=nonce, version=version)  # ACK
    server.publish(_cert(2))
    rotated, nonce2, got = await default.response()
    assert rotated != version and nonce2 != nonce
    assert got == {WORKLOAD_SECRET: _betterproto_secrets(_cert(2))[WORKLOAD_SECRET]}
    default.ask([WORKLOAD_SECRET], nonce=nonce2, version=version, error="bad key")  # NACK: nothing resent
    server.publish(_cert(3))
    _, _, got = await default.response()
    assert got == {WORKLOAD_SECRET: _betterproto_secrets(_cert(3))[WORKLOAD_SECRET]}
    for envoy in (default, root):
        envoy.requests.put_nowait(None)


async def test_delta_stream_gets_the_secret(sds: tuple[SdsServer, grpc.aio.Channel]) -> None:
    _, channel = sds
    envoy = _Envoy(channel, DELTA)
    request = DeltaRequest(node_bytes(PROXY), types.SECRET, [WORKLOAD_SECRET, ROOT_SECRET])
    envoy.requests.put_nowait(encode_delta_request(request))
    raw = await asyncio.wait_for(envoy.call.read(), 5)
    assert isinstance(raw, bytes)
    assert {r.name: r.body for r in decode_delta_response(raw).resources} == _betterproto_secrets(_cert(1))
    envoy.requests.put_nowait(None)


async def test_a_reconnecting_envoy_gets_the_secrets_at_once(sds: tuple[SdsServer, grpc.aio.Channel]) -> None:
    """Envoy restarted, or its stream reset: the secrets are still there (the control plane's XdsServer,
    which the agent used before, dropped a proxy's snapshot with its last stream: no secret until the next
    rotation, hours later)."""
    _, channel = sds
    first = _Envoy(channel)
    first.ask([WORKLOAD_SECRET], PROXY)
    await first.response()
    first.requests.put_nowait(None)
    assert await asyncio.wait_for(first.call.code(), 5) == grpc.StatusCode.OK
    again = _Envoy(channel)
    again.ask([WORKLOAD_SECRET], PROXY)
    _, _, got = await again.response()
    assert WORKLOAD_SECRET in got
    again.requests.put_nowait(None)


@pytest.mark.parametrize(
    ("node", "code", "words"),
    [
        ("ratings-v1", grpc.StatusCode.PERMISSION_DENIED, "secrets are for proxy 'reviews-v1'"),
        (None, grpc.StatusCode.INVALID_ARGUMENT, "must carry the node"),
    ],
)
async def test_another_node_or_none_is_refused(
    sds: tuple[SdsServer, grpc.aio.Channel], node: str | None, code: grpc.StatusCode, words: str
) -> None:
    _, channel = sds
    envoy = _Envoy(channel)
    envoy.ask([WORKLOAD_SECRET], node)
    assert await asyncio.wait_for(envoy.call.code(), 5) == code
    assert words in (await envoy.call.details() or "")


async def test_a_refusal_names_a_long_or_non_ascii_node_in_ascii_and_clipped(
    sds: tuple[SdsServer, grpc.aio.Channel],
) -> None:
    """The status travels in a trailer: non-ASCII is percent-encoded (up to 9 bytes a character) and the
    client's 8 KB metadata limit would hide the reason, as the control plane's refusals already avoid."""
    _, channel = sds
    envoy = _Envoy(channel)
    envoy.ask([WORKLOAD_SECRET], "é" * 3000)
    assert await asyncio.wait_for(envoy.call.code(), 5) == grpc.StatusCode.PERMISSION_DENIED
    details = await envoy.call.details() or ""
    assert "secrets are for proxy 'reviews-v1'" in details
    assert details.isascii() and len(details) <= 1100, details[:200]


async def test_a_stream_opened_before_the_first_certificate_gets_it_when_published(tmp_path: Path) -> None:
    """The agent opens its sockets before its first certificate (Envoy starts meanwhile)."""
    server = SdsServer(PROXY)
    await server.start(str(tmp_path / "sds.sock"))
    channel = grpc.aio.insecure_channel(f"unix:{tmp_path / 'sds.sock'}")
    try:
        envoy = _Envoy(channel)
        envoy.ask([WORKLOAD_SECRET, ROOT_SECRET], PROXY)
        early = asyncio.ensure_future(envoy.response())
        await asyncio.sleep(0.3)
        assert not early.done()  # nothing to send yet: the stream waits
        server.publish(_cert(1))
        _, _, secrets = await early
        assert set(secrets) == {WORKLOAD_SECRET, ROOT_SECRET}
        envoy.requests.put_nowait(None)
    finally:
        await channel.close()
        await server.stop()
