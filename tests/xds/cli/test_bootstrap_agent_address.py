"""`mecha bootstrap --agent-dir` finds the running `mecha up`'s xDS port as it finds its API: from the
state folder's up.json (so `mecha up --port-offset N` needs neither --server nor --xds-port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xds.cli.bootstrap_agent import control_plane_address
from xds.cli.main import build_parser, main
from xds.controlplane.settings import DEFAULT_XDS_PORT

API, XDS = "http://127.0.0.1:15110", "127.0.0.1:15112"  # a `mecha up --port-offset 100`


def _bootstrap_args(*extra: str) -> list[str]:
    return ["bootstrap", "--id", "myapp-1", "--agent-dir", "myapp-1", *extra]


def _address(*extra: str) -> str:
    return control_plane_address(build_parser().parse_args(_bootstrap_args(*extra)))


@pytest.fixture
def in_mesh_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder holds the .mecha/ of a running `mecha up --port-offset 100` (this process)."""
    state = tmp_path / ".mecha"
    state.mkdir()
    (state / "up.json").write_text(json.dumps({"pid": os.getpid(), "api": API, "xds": XDS}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MECHA_STATE_DIR", raising=False)
    monkeypatch.delenv("MECHA_SERVER", raising=False)
    return state


def test_the_running_mesh_xds_port_is_the_default(in_mesh_folder: Path) -> None:
    # failed before: 127.0.0.1:15012, the unshifted default, while the credential came from :15110
    assert _address() == XDS
    assert _address("--server", API + "/") == XDS  # its API named: the same mesh


def test_an_explicit_address_or_another_api_wins_over_the_running_mesh(in_mesh_folder: Path) -> None:
    assert _address("--xds-port", "16012") == "127.0.0.1:16012"
    assert _address("--xds-host", "10.0.0.5") == "10.0.0.5:15012"
    assert _address("--xds", "cp-1:15012", "--xds", "cp-2:15012") == "cp-1:15012,cp-2:15012"
    # the credential comes from another control plane: the running mesh's xDS is not its
    assert _address("--server", "http://10.0.0.5:15010") == "127.0.0.1:15012"


def test_a_mesh_that_is_gone_is_not_dialled(in_mesh_folder: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    info = {"pid": int(gone.stdout), "api": API, "xds": XDS}
    (in_mesh_folder / "up.json").write_text(json.dumps(info))
    assert _address("--server", API) == "127.0.0.1:15012"


def test_an_explicit_default_address_is_kept_beside_a_running_mesh(in_mesh_folder: Path) -> None:
    # failed before: --xds-port 15012 was also the default, so it read as "not given" (the mesh's :15112)
    assert _address("--xds-port", "15012") == "127.0.0.1:15012"
    assert _address("--xds-host", "127.0.0.1") == "127.0.0.1:15012"


def _xds_of_bootstrap(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[str, int]:
    """The mecha_xds endpoint of the bootstrap `mecha bootstrap` (no --agent-dir) prints."""
    assert main(["bootstrap", "--id", "reviews-v1", "--app", "reviews:9081:15006", *extra]) == 0
    clusters = yaml.safe_load(capsys.readouterr().out)["static_resources"]["clusters"]
    (xds,) = [c for c in clusters if c["name"] == "mecha_xds"]
    address = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    return address["socket_address"]["address"], address["socket_address"]["port_value"]


def test_a_bootstrap_without_an_agent_dials_the_given_or_documented_address(
    in_mesh_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _xds_of_bootstrap(capsys) == ("127.0.0.1", DEFAULT_XDS_PORT)
    assert _xds_of_bootstrap(capsys, "--xds-port", "16012") == ("127.0.0.1", 16012)
    assert _xds_of_bootstrap(capsys, "--xds-host", "10.0.0.5") == ("10.0.0.5", DEFAULT_XDS_PORT)
