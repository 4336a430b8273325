"""Credentials and certificates over time (issue #11): an open stream whose credential expires is closed,
and the xDS port's own certificate is renewed before it expires while open streams stay up."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from identity_helpers import (
    REVIEWS_META,
    ads_request,
    create_certificate,
    issue,
    root_of,
    secure_control_plane,
    serving_certificate,
)

from xds import types


async def test_open_stream_is_closed_when_its_credential_expires(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path) as cp:
        assert cp.xds_port is not None
        token = issue(cp, ttl_s=3)
        opened = time.monotonic()
        port, root = cp.xds_port, root_of(cp)
        outcome = await ads_request(port, root, "reviews-v1", REVIEWS_META, token, types.CLUSTER, within_s=15)
        lasted = time.monotonic() - opened
        assert outcome.responses, "the stream was served while the credential was valid"
        assert outcome.code is grpc.StatusCode.UNAUTHENTICATED, outcome
        assert "expired" in outcome.details
        assert lasted < 10, f"the stream outlived its credential by {lasted - 3:.1f}s"
        assert cp.server.proxies() == []


async def test_certificate_never_outlives_the_credential(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path) as cp:
        assert cp.xds_port is not None
        token = issue(cp, ttl_s=30)
        response, code, _ = await create_certificate(cp.xds_port, root_of(cp), token, token)
        assert code is None and response is not None
        from cryptography import x509

        leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
        left = (leaf.not_valid_after_utc - datetime.now(UTC)).total_seconds()
        assert left <= 31, f"certificate valid {left:.0f}s, credential 30s"


async def test_serving_certificate_is_renewed_before_expiry_and_open_streams_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MECHA_SERVING_CERT_TTL", "4")
    async with secure_control_plane(tmp_path) as cp:
        port, root = cp.xds_port, root_of(cp)
        assert port is not None
        token = issue(cp)
        first = await asyncio.to_thread(serving_certificate, port, root)
        stream = asyncio.create_task(
            ads_request(port, root, "reviews-v1", REVIEWS_META, token, types.CLUSTER, within_s=9)
        )
        await asyncio.sleep(2.5)  # past half of its lifetime
        renewed = await asyncio.to_thread(serving_certificate, port, root)
        assert renewed.serial_number != first.serial_number
        assert renewed.not_valid_after_utc > first.not_valid_after_utc
        expired_in = (first.not_valid_after_utc - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(expired_in, 0) + 0.2)  # the first one has expired
        current = await asyncio.to_thread(serving_certificate, port, root)
        assert current.not_valid_after_utc > datetime.now(UTC)
        # new connections verify (CSR and xDS), and the stream opened on the old certificate is still up
        response, code, details = await create_certificate(port, root, token, token)
        assert code is None and response is not None, details
        again = await ads_request(port, root, "reviews-v1", REVIEWS_META, token, types.CLUSTER, within_s=1)
        assert again.code is None and again.responses
        kept = await stream
        assert kept.code is None and kept.responses, kept
