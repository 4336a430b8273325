"""Auto-registration across two `mecha serve` replicas on one PostgreSQL store (issue #15), real Envoys.

A proxy registered through replica A restarts and reconnects to replica B within the grace period: it keeps
its one WorkloadEntry (now B's, never stamped disconnected), also after the grace period has passed; once it
leaves for good, the entry is removed after the grace period by exactly one replica (the leader's clean-up),
and both replicas agree it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_replicas import shared_schema

from xds.bootstrap import BootstrapParams, render
from xds.testing.envoy import EnvoyProcess, free_port
from xds.testing.replicas import Replica, running_replicas

pytestmark = [pytest.mark.e2e, pytest.mark.backend]

GRACE_S = 3.0
GROUP = """apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: web, namespace: default}
spec:
  metadata: {labels: {app: web}}
  template: {ports: {http: 8080}}
"""
CLEANED = "endpoint clean-up: removed"


@contextlib.asynccontextmanager
async def registering_envoy(tmp: Path, proxy_id: str, replica: Replica) -> AsyncIterator[EnvoyProcess]:
    """An Envoy whose node names WorkloadGroup web, connected to `replica` only."""
    labels = {"app": "web"}
    metadata = {
        "mode": "sidecar",
        "namespace": "default",
        "address": "127.0.0.1",
        "workload_group": "web",
        "labels": labels,
        "outbound_port": free_port(),
        "apps": [{"name": "web", "app_port": free_port(), "inbound_port": free_port(), "labels": labels}],
    }
    params = BootstrapParams(
        proxy_id=proxy_id, xds_port=replica.xds_port, admin_port=free_port(), metadata=metadata
    )
    proc = EnvoyProcess(render(params), tmp / f"{proxy_id}-{replica.name}", name=proxy_id)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


async def entries(replica: Replica) -> list[dict[str, Any]]:
    status, body = await replica.get("/api/v1/workloads", within=3)
    assert status == 200, body
    return list(body["workloads"])


async def until(check: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def controller_of(entry: dict[str, Any], replica: Replica) -> bool:
    return str(entry["annotations"].get("istio.io/workloadController", "")).endswith(f":{replica.xds_port}")


async def test_proxy_moving_between_replicas_keeps_one_entry_cleaned_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MECHA_REGISTRATION_GRACE", str(GRACE_S))
    async with shared_schema() as store, running_replicas(store, tmp_path) as (a, b):
        status, body = await a.apply(GROUP)
        assert status == 200, body

        async with registering_envoy(tmp_path, "web-1", a):

            async def registered_by_a() -> bool:
                found = await entries(b)  # B sees what A wrote: the entry is in the shared store
                return len(found) == 1 and controller_of(found[0], a)

            await until(registered_by_a, 20, "web-1 never registered through replica A")
            name = (await entries(a))[0]["name"]

        # the proxy restarts and reaches replica B this time, well within the grace period
        async with registering_envoy(tmp_path, "web-1", b):

            async def registered_by_b() -> bool:
                found = await entries(a)
                return (
                    len(found) == 1
                    and controller_of(found[0], b)
                    and "istio.io/disconnectedAt" not in found[0]["annotations"]
                )

            await until(registered_by_b, 20, "web-1 never re-registered through replica B")
            await asyncio.sleep(GRACE_S * 2)  # past the grace period: a connected proxy's entry stays
            for replica in (a, b):
                found = await entries(replica)
                assert [e["name"] for e in found] == [name], found
                assert controller_of(found[0], b), found[0]["annotations"]
                assert "istio.io/disconnectedAt" not in found[0]["annotations"], found[0]["annotations"]
            assert CLEANED not in a.tail() + b.tail()

        left = time.monotonic()

        async def gone_everywhere() -> bool:
            return not await entries(a) and not await entries(b)

        await until(gone_everywhere, GRACE_S + 15, "the entry was never cleaned up")
        assert time.monotonic() - left >= GRACE_S, "removed before the grace period"
        await asyncio.sleep(2 * GRACE_S)  # a second clean-up would show up here
        logs = {r.name: r.log.read_text(errors="replace") for r in (a, b)}
        removals = {name: text.count(CLEANED) for name, text in logs.items()}
        assert sum(removals.values()) == 1, removals
