"""A credential shared by scaled replicas (compose --scale): node ids <proxy id>.<instance> register one entry
each and report on their own entry; nothing else the credential does not name is accepted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import grpc
import pytest
from identity_helpers import ads_request, root_of, secure_control_plane
from test_registration import applied, credential, eds_of, entry, member, stream, until

from xds import types
from xds.controlplane.api import start_api
from xds.identity.credential import CredentialError, instance_label, node_id_of


@pytest.mark.parametrize(
    "node_id,instances",
    [
        ("reviews-v1.web-1", False),  # an ordinary credential names one node id only
        ("reviews-v1x", True),  # a prefix is not an instance
        ("reviews-v1.", True),  # empty instance
        ("reviews-v1.a.b", True),  # two labels
        ("reviews-v1.Web1", True),  # not a DNS label
        ("reviews-v2.web-1", True),  # another proxy's instances
        ("reviews-v1." + "a" * 64, True),  # longer than a DNS label
    ],
)
async def test_node_ids_the_credential_does_not_name_are_refused(
    tmp_path: Path, node_id: str, instances: bool
) -> None:
    async with secure_control_plane(tmp_path) as cp:
        await applied(cp)
        assert cp.xds_port is not None
        token = credential(cp, "reviews-v1", instances=instances)
        out = await ads_request(cp.xds_port, root_of(cp), node_id, member(), token, types.CLUSTER)
        assert out.code is grpc.StatusCode.PERMISSION_DENIED, out.details
        assert out.details.startswith("node.id"), out.details
        await cp.registration.reconcile()
        assert not [k for k in cp.store.documents if k[0] == "WorkloadEntry"]


async def test_instances_of_one_credential_register_and_report_each_their_own(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path) as cp:
        runner, port = await start_api(cp, "127.0.0.1", 0, cp.settings.state_dir)
        url = f"http://127.0.0.1:{port}/api/v1/workloads/health"
        try:
            await applied(cp)
            token = credential(cp, "reviews-v1", instances=True)
            async with (
                aiohttp.ClientSession() as http,
                stream(cp, "reviews-v1.c1", member("10.1.0.5"), token),
                stream(cp, "reviews-v1.c2", member("10.1.0.6"), token),
            ):
                both = {"10.1.0.5:15006", "10.1.0.6:15006"}
                await until(lambda: set(eds_of(cp, "reviews-v1.c1")) == both)
                assert entry(cp, "reviews-reviews-v1-c1")["spec"]["address"] == "10.1.0.5"
                assert entry(cp, "reviews-reviews-v1-c2")["spec"]["address"] == "10.1.0.6"

                async def post(body: dict[str, object]) -> tuple[int, dict[str, object]]:
                    headers = {"Authorization": f"Bearer {token}"}
                    async with http.post(url, json=body, headers=headers) as resp:
                        return resp.status, await resp.json()

                # names outside the credential: refused, nothing changes
                for other in ("reviews-v2.c1", "reviews-v1x", "reviews-v1.a.b"):
                    status, answer = await post({"draining": True, "proxy_id": other})
                    assert status == 403 and "proxy_id" in str(answer["error"]), answer
                assert (await post({"draining": True, "proxy_id": 7}))[0] == 400
                assert set(eds_of(cp, "reviews-v1.c1")) == both
                status, answer = await post({"healthy": False, "proxy_id": "reviews-v1.c2"})
                assert status == 200 and answer["entry"] == "default/reviews-reviews-v1-c2", answer
                await until(lambda: set(eds_of(cp, "reviews-v1.c1")) == {"10.1.0.5:15006"})
        finally:
            await runner.cleanup()


def test_node_id_comes_from_the_host_name_for_instance_credentials() -> None:
    from xds.identity.credential import Credential

    shared = Credential("reviews-v1", "default", ("reviews",), instances=True)
    assert node_id_of(shared, "3F2a9c0d1e7b.local") == "reviews-v1.3f2a9c0d1e7b"
    assert node_id_of(Credential("reviews-v1", "default", ("reviews",)), "abc") == "reviews-v1"
    assert instance_label("web_1") == "web-1"
    with pytest.raises(CredentialError, match="host name"):
        instance_label("---")


def test_rewritten_request_keeps_everything_but_the_node_id_and_address() -> None:
    from xds.agent.node import SOTW_NODE, NodeRewrite, rewrite_request
    from xds.server.codec import SotwRequest, decode_sotw_request, encode_sotw_request
    from xds.server.server import identity_from_node
    from xds.testing.fake_proxy import node_bytes

    meta = member("0.0.0.0")
    raw = encode_sotw_request(SotwRequest(node=node_bytes("reviews-v1", meta), type_url=types.CLUSTER,
                                          resource_names=["a", "b"], response_nonce="7"))  # fmt: skip
    out = decode_sotw_request(rewrite_request(raw, SOTW_NODE, NodeRewrite("reviews-v1.c1", "172.30.89.7")))
    assert (out.type_url, out.resource_names, out.response_nonce) == (types.CLUSTER, ["a", "b"], "7")
    identity = identity_from_node(out.node, "request")
    assert (identity.id, identity.address) == ("reviews-v1.c1", "172.30.89.7")
    assert (identity.workload_group, identity.label_map) == ("reviews", {"app": "reviews", "version": "v1"})
    assert identity.apps[0].inbound_port == 15006
    ack = encode_sotw_request(SotwRequest(type_url=types.CLUSTER, response_nonce="8"))
    assert rewrite_request(ack, SOTW_NODE, NodeRewrite("x", "1.2.3.4")) == ack  # no node: untouched


async def test_agent_registers_its_instance_at_the_address_that_routes_to_the_control_plane(
    tmp_path: Path,
) -> None:
    """One bootstrap for every replica (node id reviews-v1, address 0.0.0.0): the agent makes it
    reviews-v1.<host name> at the address it reaches the control plane from."""
    import socket

    from xds.agent.agent import Agent, AgentConfig
    from xds.server.codec import SotwRequest, decode_sotw_response, encode_sotw_request
    from xds.testing.fake_proxy import node_bytes

    async with secure_control_plane(tmp_path / "cp") as cp:
        await applied(cp)
        assert cp.xds_port is not None
        token = credential(cp, "reviews-v1", instances=True, addresses=["127.0.0.0/8"])
        (tmp_path / "credential.jwt").write_text(token)
        config = AgentConfig(
            tmp_path / "credential.jwt", f"127.0.0.1:{cp.xds_port}", tmp_path / "s", root_of(cp)
        )
        agent = Agent(config)
        await agent.start()
        try:
            request = encode_sotw_request(
                SotwRequest(node=node_bytes("reviews-v1", member("0.0.0.0")), type_url=types.CLUSTER)
            )
            async with grpc.aio.insecure_channel(f"unix:{agent.xds_socket}") as ch:
                call = ch.stream_stream("/envoy.service.discovery.v3.AggregatedDiscoveryService/"
                                        "StreamAggregatedResources")()  # fmt: skip
                await call.write(request)
                await call.read()
                name = f"reviews-reviews-v1-{instance_label(socket.gethostname())}"
                body = await until(lambda: entry(cp, name))
                assert body["spec"]["address"] == "127.0.0.1"
                assert body["metadata"]["annotations"]["mecha.io/proxyId"] == agent.proxy_id
                call.cancel()
            # SDS: Envoy asks with its bootstrap's node id and gets the workload certificate
            node = node_bytes("reviews-v1", member("0.0.0.0"))
            secrets = encode_sotw_request(
                SotwRequest(node=node, type_url=types.SECRET, resource_names=["default"])
            )
            async with grpc.aio.insecure_channel(f"unix:{agent.sds_socket}") as ch:
                # the method Envoy's SDS cluster calls (the agent's sds.sock serves only SDS)
                call = ch.stream_stream("/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets")()
                await call.write(secrets)
                response = decode_sotw_response(await asyncio.wait_for(call.read(), 5))
                assert response.type_url == types.SECRET and len(response.resources) == 1
                call.cancel()
        finally:
            await agent.stop()
