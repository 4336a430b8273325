"""Start-up order of the embedded agent: the capability service's main thread reads the --agent-* flags
without importing the agent (gRPC, cryptography, the Envoy protos: ~0.6 s), which its own thread imports while
the service starts (else the service's start waited for them: +0.3 s to sidecar ready, docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
