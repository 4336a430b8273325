"""Start-up order of the embedded agent: the capability service's main thread reads the --agent-* flags
without importing the agent (gRPC, cryptography), which its own thread imports while
the service starts (else the service's start waited for them: +0.3 s to sidecar ready, docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from agent_helpers import SIDECAR_META, served_control_plane
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls

from xds import types
from xds.server.codec import SotwRequest, decode_sotw_response, encode_sotw_request
from xds.testing.fake_proxy import node_bytes

HEAVY = ("xds.agent.agent", "grpc", "cryptography", "envoy_data_plane")

READ_FLAGS = (
    f"HEAVY = {HEAVY!r}\n"
    + """
import argparse, json, sys
from capabilities.identity_agent import add_arguments, config_from_args
parser = argparse.ArgumentParser()
add_arguments(parser)
config = config_from_args(parser.parse_args(sys.argv[1:]))
print(json.dumps({"socket_dir": str(config.socket_dir), "loaded": [m for m in HEAVY if m in sys.modules]}))
"""
)


def test_reading_agent_flags_loads_no_agent_module(tmp_path: Path) -> None:
    root = tmp_path / "root-cert.pem"
    root.write_text("not read here\n")
    argv = ["--agent-credential", str(tmp_path / "credential.jwt"), "--agent-socket-dir", str(tmp_path),
            "--agent-root-cert", str(root)]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", READ_FLAGS, *argv], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["socket_dir"] == str(tmp_path)
    assert result["loaded"] == []


def test_package_names_still_resolve() -> None:
    import xds.agent
    from xds.agent.agent import Agent
    from xds.agent.config import AgentConfig

    assert xds.agent.Agent is Agent
    assert xds.agent.AgentConfig is AgentConfig
    assert callable(xds.agent.run_agent)


# The agent until Envoy is served: first certificate, both sockets, a secret over sds.sock and a first ADS
# answer through xds.sock. No generated Envoy protos (envoy-data-plane, betterproto2: ~0.5 s of imports that
# Envoy would wait for on a sidecar's start; the ADS proxy forwards raw bytes, SDS uses the hand codec).
SERVE = """
import asyncio, json, sys
from pathlib import Path
import grpc
from xds.agent.agent import Agent, AgentConfig

SDS = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

async def first_answer(socket, method, request):
    async def requests():
        yield request
        await asyncio.sleep(30)  # keep the stream open: the answer comes before the end
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        call = channel.stream_stream(method)(requests())
        answer = await asyncio.wait_for(call.read(), 20)
        call.cancel()
        return answer

async def main(credential, control_plane, root, sockets, sds_request, ads_request):
    agent = Agent(AgentConfig(Path(credential), control_plane, Path(sockets), Path(root)))
    await agent.start()
    try:
        sds = await first_answer(agent.sds_socket, SDS, bytes.fromhex(sds_request))
        ads = await first_answer(agent.xds_socket, ADS, bytes.fromhex(ads_request))
    finally:
        await agent.stop()
    protos = ("envoy_data_plane", "betterproto2", "pydantic")
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in protos)
    print(json.dumps({"sds": sds.hex(), "ads": ads.hex(), "loaded": heavy}))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_serving_envoy_loads_no_envoy_protos(tmp_path: Path) -> None:
    node = node_bytes("reviews-v1", SIDECAR_META)
    sds = encode_sotw_request(SotwRequest(node=node, resource_names=["default"], type_url=types.SECRET))
    ads = encode_sotw_request(SotwRequest(node=node, type_url=types.CLUSTER))
    async with served_control_plane(tmp_path / "cp", {}) as cp:
        argv = [str(cp.credential()), cp.xds, str(cp.root), str(tmp_path / "sockets"), sds.hex(), ads.hex()]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVE, *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out)
    secrets = decode_sotw_response(bytes.fromhex(result["sds"])).resources
    assert [tls.Secret.parse(s.body).name for s in secrets] == ["default"]
    clusters = decode_sotw_response(bytes.fromhex(result["ads"]))
    assert clusters.type_url == types.CLUSTER and clusters.version_info  # no config: no cluster
    assert result["loaded"] == []


def test_the_service_reads_all_its_flags_before_asyncio(tmp_path: Path) -> None:
    """Everything the capability service does before it spawns its agent (all its flags parsed) loads no event
    loop, HTTP or gRPC module: the agent's sockets are on Envoy's start path and would wait for them."""
    script = (
        "import json, sys\n"
        "from capabilities.__main__ import parse_args\n"
        "from capabilities.identity_agent import config_from_args\n"
        "config_from_args(parse_args(sys.argv[1:]))\n"
        "print(json.dumps([m for m in ('asyncio', 'aiohttp', 'grpc', 'yaml') if m in sys.modules]))\n"
    )
    root = tmp_path / "root-cert.pem"
    root.write_text("not read here\n")
    argv = ["--app-id", "a", "--agent-credential", str(tmp_path / "credential.jwt"), "--agent-socket-dir",
            str(tmp_path), "--agent-root-cert", str(root), "--enable-app-health-check"]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_the_service_start_reads_no_credential_claims(tmp_path: Path) -> None:
    """The workload reporter the service builds before it serves does not parse the credential (the JWT
    library and cryptography, ~50 ms of CPU on the sidecar's start path): it does so at its first report."""
    credential = tmp_path / "credential.jwt"
    credential.write_text("header.payload.signature\n")
    script = (
        "import json, sys\n"
        "from capabilities.apphealth import reporter_for\n"
        "assert reporter_for('http://127.0.0.1:15010', sys.argv[1]) is not None\n"
        "heavy = ('jwt', 'cryptography', 'xds.identity.credential')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(credential)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
