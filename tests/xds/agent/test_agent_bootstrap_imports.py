"""The runner rewrites each Envoy's bootstrap onto its agent's sockets (xds.agent.bootstrap) on its event
loop, before that Envoy starts: without the translator (pydantic models, generated Envoy protos), whose
import held `mecha up` ~0.5 s (2.3 s at load 10, py-spy of the supervisor) before the first Envoy."""

from __future__ import annotations

import json
import subprocess
import sys

from xds.agent.bootstrap import SDS_CLUSTER
from xds.translate.security.mtls import SDS_CLUSTER as TRANSLATOR_SDS_CLUSTER

PROBE = """
import json, sys
from xds.agent.launch import agent_bootstrap, wait_for_sockets
import xds.agent.bootstrap
heavy = ("xds.translate", "envoy_data_plane", "pydantic", "betterproto2")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def test_same_sds_cluster_name_as_the_translator() -> None:
    assert SDS_CLUSTER == TRANSLATOR_SDS_CLUSTER


def test_rewriting_a_bootstrap_loads_no_translator() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
