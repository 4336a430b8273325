"""When the agent replaces its certificate: at half the lifetime left when it asked for it. The CA backdates
not_before by a minute for clock skew, so a lifetime counted from not_before made every certificate shorter
than that due on arrival: the agent asked again at once, ~100 CSRs a second, each pushed to Envoy over SDS
(ssl contexts of every cluster and listener rebuilt each time) until requests timed out under load."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from agent_helpers import served_control_plane

from xds.agent.certs import CertificateClient, CertificateError, WorkloadCert, rotate_forever
from xds.agent.channel import CredentialSource, open_channel
from xds.ca.authority import CLOCK_SKEW


def _cert(ttl: timedelta, now: datetime | None = None) -> WorkloadCert:
    """A certificate as the CA shapes it (not_before backdated by CLOCK_SKEW, not_after `ttl` from now),
    received now."""
    now = now or datetime.now(UTC)
    return WorkloadCert(b"key", b"chain", b"root", now - CLOCK_SKEW, now + ttl)


class _CountingClient:
    """Stands in for CertificateClient: answers at once with a certificate like the current one."""

    def __init__(self, ttl: timedelta) -> None:
        self.ttl = ttl
        self.asked: list[float] = []

    async def fetch(self) -> WorkloadCert:
        self.asked.append(time.monotonic())
        return _cert(self.ttl)


async def _rotate_for(client: _CountingClient, first: WorkloadCert, seconds: float) -> None:
    async def publish(_cert: WorkloadCert) -> None:
        return None

    task = asyncio.create_task(rotate_forever(cast(CertificateClient, client), first, publish))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_an_8s_certificate_backdated_for_clock_skew_is_due_after_4s() -> None:
    now = datetime.now(UTC)
    cert = _cert(timedelta(seconds=8), now)
    # was not_before + 34 s: 26 s in the past
    assert abs(cert.rotate_after() - (now + timedelta(seconds=4))) < timedelta(seconds=0.1)


async def test_rotation_waits_half_the_lifetime_not_asking_again_on_arrival() -> None:
    """Failed before the fix: the 8 s certificate was already due, the agent asked hundreds of times."""
    client = _CountingClient(timedelta(seconds=8))
    await _rotate_for(client, _cert(timedelta(seconds=8)), 1.5)
    assert client.asked == [], f"asked {len(client.asked)} times in 1.5 s for an 8 s certificate"


async def test_a_certificate_due_on_arrival_is_asked_for_at_most_once_a_second() -> None:
    """An agent clock ahead of the CA's sees each new certificate past its rotation point: no CSR storm."""
    client = _CountingClient(timedelta(seconds=-1))
    started = time.monotonic()
    await _rotate_for(client, _cert(timedelta(seconds=-1)), 2.5)
    assert client.asked, "never asked for a new certificate"
    gaps = [b - a for a, b in zip([started, *client.asked], client.asked, strict=False)]
    assert min(gaps) >= 0.95, gaps  # one second apart at least (asyncio's timer may wake a hair early)


async def test_the_real_cas_short_certificate_is_due_at_half_its_ttl(tmp_path: Path) -> None:
    """Against `mecha serve` with MECHA_CERT_TTL=8 (its CA backdates not_before): due ~4 s after asking."""
    async with served_control_plane(tmp_path / "cp", {"MECHA_CERT_TTL": "8"}) as cp:
        channel = open_channel(cp.xds, cp.root)
        try:
            client = CertificateClient(channel, CredentialSource(cp.credential()), "cluster.local")
            asked = datetime.now(UTC)
            cert = await client.fetch()
        finally:
            await channel.close()
    assert cert.not_before < asked - timedelta(seconds=30)  # the backdate this is about
    due_in = (cert.rotate_after() - asked).total_seconds()
    assert 3.0 <= due_in <= 4.5, f"due {due_in:.1f} s after asking for an 8 s certificate"


async def test_a_failed_rotation_is_retried_after_a_second() -> None:
    """The CA not answering: the next CSR a second later, as the docstring says (it waited RETRY_S and then
    the one-second floor again: 2 s between attempts)."""

    class _FailingClient(_CountingClient):
        async def fetch(self) -> WorkloadCert:
            self.asked.append(time.monotonic())
            raise CertificateError("CreateCertificate: UNAVAILABLE")

    client = _FailingClient(timedelta(seconds=-1))
    await _rotate_for(client, _cert(timedelta(seconds=-1)), 3.6)
    gaps = [b - a for a, b in zip(client.asked, client.asked[1:], strict=False)]
    assert len(client.asked) >= 3 and max(gaps) < 1.5, gaps
