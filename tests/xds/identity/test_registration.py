"""Auto-registration over real gRPC streams: a proxy naming its WorkloadGroup gets a WorkloadEntry (never more
than its credential allows), health reports with its credential reach EDS, and a disconnected proxy's
entry goes after the grace period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from identity_helpers import ADS_METHOD, ads_request, channel, root_of, secure_control_plane

from xds import types
from xds.controlplane.api import start_api
from xds.controlplane.runtime import ControlPlane
from xds.server.codec import SotwRequest, encode_sotw_request
from xds.testing.fake_proxy import node_bytes
from xds.testing.registration import group_and_service

MESH = group_and_service("reviews")  # WorkloadGroup + ServiceEntry
CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"


def member(address: str = "10.1.0.5", group: str = "reviews", **extra: Any) -> dict[str, Any]:
    return {
        "mode": "sidecar",
        "namespace": "default",
        "address": address,
        "workload_group": group,
        "labels": {"app": "reviews", "version": "v1"},
        "apps": [{"name": "reviews", "app_port": 9081, "inbound_port": 15006}],
        **extra,
    }


def credential(cp: ControlPlane, proxy_id: str, **kw: Any) -> str:
    assert cp.identity.issuer is not None
    kw.setdefault("workload_group", "reviews")
    kw.setdefault("addresses", ["10.1.0.0/24"])
    token, _ = cp.identity.issuer.issue(
        proxy_id, "default", ["reviews"], {"app": ["reviews"], "version": ["v1"]}, **kw
    )
    return token


@asynccontextmanager
async def stream(cp: ControlPlane, proxy_id: str, meta: dict[str, Any], token: str) -> AsyncIterator[Any]:
    """An ADS stream held open (a connected proxy) until the block ends."""
    assert cp.xds_port is not None
    request = encode_sotw_request(
        SotwRequest(node=node_bytes(proxy_id, meta), type_url=types.CLUSTER, resource_names=[])
    )
    async with channel(cp.xds_port, root_of(cp)) as ch:
        call = ch.stream_stream(ADS_METHOD)(metadata=(("authorization", f"Bearer {token}"),))
        await call.write(request)
        await call.read()  # the first response: the stream is registered
        try:
            yield call
        finally:
            call.cancel()


async def until(check: Callable[[], Any], within_s: float = 5.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within_s}s")
        await asyncio.sleep(0.05)


def entry(cp: ControlPlane, name: str) -> dict[str, Any] | None:
    doc = cp.store.documents.get(("WorkloadEntry", "default", name))
    return doc.body if doc is not None else None


def eds_of(cp: ControlPlane, proxy_id: str) -> dict[str, core.HealthStatus]:
    snap = cp.snapshot(proxy_id)
    if snap is None or CLUSTER not in snap.resources[types.ENDPOINT]:
        return {}
    cla = ep.ClusterLoadAssignment().parse(snap.resources[types.ENDPOINT][CLUSTER].body)
    return {
        f"{lb.endpoint.address.socket_address.address}:{lb.endpoint.address.socket_address.port_value}": (
            lb.health_status
        )
        for group in cla.endpoints
        for lb in group.lb_endpoints
    }


async def applied(cp: ControlPlane) -> None:
    outcome = await cp.apply([("mesh.yaml", MESH)])
    assert outcome["accepted"], outcome["diagnostics"]


async def test_connected_proxy_registers_and_its_entry_reaches_eds(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path, registration_grace=0.5) as cp:
        await applied(cp)
        async with stream(cp, "reviews-v1-a", member(), credential(cp, "reviews-v1-a")):
            body = await until(lambda: entry(cp, "reviews-reviews-v1-a"))
            assert body["spec"]["address"] == "10.1.0.5"
            assert body["spec"]["ports"] == {"http": 15006}  # the proxy's inbound listener
            assert body["spec"]["labels"] == {"app": "reviews", "version": "v1"}
            assert body["spec"]["serviceAccount"] == "reviews"
            annotations = body["metadata"]["annotations"]
            assert annotations["istio.io/autoRegistrationGroup"] == "reviews"
            assert "istio.io/connectedAt" in annotations and "istio.io/disconnectedAt" not in annotations
            assert cp.store.owner(("WorkloadEntry", "default", "reviews-reviews-v1-a")) == "registration"
            eds = await until(lambda: eds_of(cp, "reviews-v1-a"))
            assert eds == {"10.1.0.5:15006": core.HealthStatus.UNKNOWN}
        # disconnected: stamped, then removed by the clean-up job after the grace period
        await until(lambda: "istio.io/disconnectedAt" in (entry(cp, "reviews-reviews-v1-a") or {}).get(
            "metadata", {}).get("annotations", {}))  # fmt: skip
        await cp.registration.clean_up(now=time.time() + 1.0)
        assert entry(cp, "reviews-reviews-v1-a") is None


async def test_reconnect_within_grace_keeps_the_entry(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path, registration_grace=30.0) as cp:
        await applied(cp)
        token = credential(cp, "reviews-v1-a")
        async with stream(cp, "reviews-v1-a", member(), token):
            await until(lambda: entry(cp, "reviews-reviews-v1-a"))
        await until(
            lambda: "istio.io/disconnectedAt" in entry(cp, "reviews-reviews-v1-a")["metadata"]["annotations"]
        )
        assert await cp.registration.clean_up() == 0  # within the grace period
        async with stream(cp, "reviews-v1-a", member(), token):
            await until(
                lambda: (
                    "istio.io/disconnectedAt"
                    not in entry(cp, "reviews-reviews-v1-a")["metadata"]["annotations"]
                )
            )
            assert await cp.registration.clean_up(now=time.time() + 3600) == 0  # connected: never removed


@pytest.mark.parametrize(
    "meta,cred,field",
    [
        (member(address="10.9.9.9"), {}, "node.metadata.mecha.address"),  # outside the credential's CIDR
        (member(group="ratings"), {}, "node.metadata.mecha.workload_group"),  # another group
        (member(), {"workload_group": "", "addresses": []}, "node.metadata.mecha.workload_group"),  # none
        ({**member(), "labels": {"app": "ratings"}}, {}, "node.metadata.mecha.labels.app"),  # labels
    ],
    ids=["address", "other-group", "no-group-in-credential", "label"],
)
async def test_overclaiming_proxy_is_refused_and_registers_nothing(
    tmp_path: Path, meta: dict[str, Any], cred: dict[str, Any], field: str
) -> None:
    async with secure_control_plane(tmp_path) as cp:
        await applied(cp)
        assert cp.xds_port is not None
        out = await ads_request(
            cp.xds_port,
            root_of(cp),
            "reviews-v1-a",
            meta,
            credential(cp, "reviews-v1-a", **cred),
            types.CLUSTER,
        )
        assert out.code is grpc.StatusCode.PERMISSION_DENIED and out.details.startswith(field), out.details
        await cp.registration.reconcile()
        assert not [k for k in cp.store.documents if k[0] == "WorkloadEntry"]


async def test_health_reports_need_the_own_credential_and_drive_eds(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path) as cp:
        runner, port = await start_api(cp, "127.0.0.1", 0, cp.settings.state_dir)
        url = f"http://127.0.0.1:{port}/api/v1/workloads/health"
        try:
            await applied(cp)
            token_a, token_b = credential(cp, "reviews-v1-a"), credential(cp, "reviews-v1-b")
            async with (
                aiohttp.ClientSession() as http,
                stream(cp, "reviews-v1-a", member("10.1.0.5"), token_a),
                stream(cp, "reviews-v1-b", member("10.1.0.6"), token_b),
            ):
                both = {"10.1.0.5:15006", "10.1.0.6:15006"}
                await until(lambda: set(eds_of(cp, "reviews-v1-a")) == both)

                async def post(body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with http.post(url, json=body, headers=headers) as resp:
                        return resp.status, await resp.json()

                # attacker: no credential, a forged one, the API token's place: nothing changes
                assert (await post({"healthy": False}, None))[0] == 401
                assert (await post({"healthy": False}, token_a[:-4] + "AAAA"))[0] == 401
                assert (await post({"healthy": "no"}, token_a))[0] == 400
                assert (await post({"healthy": False, "address": "x"}, token_a))[0] == 400
                assert set(eds_of(cp, "reviews-v1-a")) == both
                # b reports itself unhealthy: only b leaves EDS (a's credential can never name b's entry)
                status, answer = await post({"healthy": False, "message": "GET /healthz: 503"}, token_b)
                assert status == 200 and answer["entry"] == "default/reviews-reviews-v1-b", answer
                await until(lambda: set(eds_of(cp, "reviews-v1-a")) == {"10.1.0.5:15006"})
                status, _ = await post({"healthy": True}, token_b)
                await until(lambda: set(eds_of(cp, "reviews-v1-a")) == both)
                # a drains: DRAINING in EDS, still listed (in-flight requests finish)
                assert (await post({"draining": True}, token_a))[0] == 200
                await until(
                    lambda: eds_of(cp, "reviews-v1-b").get("10.1.0.5:15006") == core.HealthStatus.DRAINING
                )
                # a credential without a group has no entry to report on
                plain, _ = cp.identity.issuer.issue("other", "default", ["reviews"])
                assert (await post({"healthy": True}, plain))[0] == 403
        finally:
            await runner.cleanup()


async def test_restarted_proxy_gets_a_fresh_entry_without_draining(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path, registration_grace=30.0) as cp:
        await applied(cp)
        token = credential(cp, "reviews-v1-a")
        async with stream(cp, "reviews-v1-a", member(), token):
            await until(lambda: entry(cp, "reviews-reviews-v1-a"))
            cred = cp.identity.authenticator.credential({"authorization": f"Bearer {token}"})
            await cp.registration.report(cred, None, True)
            await until(
                lambda: eds_of(cp, "reviews-v1-a").get("10.1.0.5:15006") == core.HealthStatus.DRAINING
            )
        # the next instance connects before the old stream's disconnect was even noticed
        async with stream(cp, "reviews-v1-a", member(), token):
            await until(lambda: "status" not in entry(cp, "reviews-reviews-v1-a"))
            await until(lambda: eds_of(cp, "reviews-v1-a").get("10.1.0.5:15006") == core.HealthStatus.UNKNOWN)
