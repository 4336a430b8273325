"""`mecha up --config`: sidecars register in their WorkloadGroups only when the user's folder declares them
(the walkthrough copies the Bookinfo YAML with its WorkloadGroups: unregistered, every call was 503)."""

from __future__ import annotations

from pathlib import Path

from xds.demo.config import demo_config, make_layout
from xds.runner.stack import Stack, StackOptions, declared_workload_groups


def _stack(tmp_path: Path, config: Path | None, register: bool | None = None) -> Stack:
    layout = make_layout("sidecar")
    options = StackOptions(
        layout=layout,
        state_dir=tmp_path / "state",
        api_port=1,
        xds_port=2,
        config_dir=config,
        register=register,
    )
    return Stack(options)


def test_a_folder_with_the_demo_groups_registers(tmp_path: Path) -> None:
    layout = make_layout("sidecar")
    folder = tmp_path / "bookinfo"
    folder.mkdir()
    (folder / "bookinfo.yaml").write_text(demo_config(layout))
    assert {"productpage-v1", "reviews-v1"} <= declared_workload_groups([folder])
    assert _stack(tmp_path, folder).registers


def test_a_folder_with_its_own_endpoints_does_not(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "mesh.yaml").write_text("kind: WorkloadEntry\nmetadata: {name: a}\n---\n: [broken\n")
    assert declared_workload_groups([folder]) == set()
    assert not _stack(tmp_path, folder).registers
    assert _stack(tmp_path, folder, register=True).registers  # an explicit choice wins
    assert _stack(tmp_path, None).registers  # the generated demo config always registers
