"""One broken component does not take down every app: `scopes` keeps it out of other apps' sidecars and
`spec.ignoreErrors` keeps its own sidecar healthy (real processes, a Redis component on a closed port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from capability_testkit import component
from sidecar_process import FakeControlPlane, SidecarProcess, start_sidecar

from capabilities.config.documents import ConfigError, parse_component
from xds.testing.envoy import free_port


def resources(*, ignore_errors: bool) -> list[dict[str, Any]]:
    broken = component("cache", "state.redis", redisHost=f"127.0.0.1:{free_port()}")  # nothing listens
    broken["scopes"] = ["a"]
    broken["spec"]["initTimeout"] = "2s"
    if ignore_errors:
        broken["spec"]["ignoreErrors"] = True
    return [component("statestore", "state.in-memory"), broken]


def healthy(sidecar: SidecarProcess) -> bool:
    return sidecar.request("GET", "/v1.0/healthz").status == 204


def settled(sidecar: SidecarProcess) -> bool:
    """Component loading finished, whatever its outcome: health no longer says they are loading. (The
    service listens before the control plane's components arrive: its listening line is not enough.)"""
    if "listening on" not in sidecar.log():
        return False
    return b"components are not loaded yet" not in sidecar.request("GET", "/v1.0/healthz").body


@pytest.fixture
def sidecars(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, SidecarProcess]]:
    """request.param: (ignoreErrors, where the components come from: a folder or the control plane)."""
    ignore_errors, source = request.param
    docs = resources(ignore_errors=ignore_errors)
    control_plane = None
    if source == "folder":
        folder = tmp_path / "resources"
        folder.mkdir()
        (folder / "components.yaml").write_text(yaml.safe_dump_all(docs))
        args = ["--resources-path", str(folder)]
    else:
        port = free_port()
        control_plane = FakeControlPlane(port, {"version": 1, "components": docs})
        args = ["--control-plane", f"http://127.0.0.1:{port}"]
    started: dict[str, SidecarProcess] = {}
    try:
        for app_id in ("a", "b"):
            started[app_id] = start_sidecar(tmp_path, app_id, *args)
        for sidecar in started.values():
            sidecar.wait_until(lambda s=sidecar: settled(s), "components loaded")
        yield started
    finally:
        for sidecar in started.values():
            sidecar.stop()
        if control_plane is not None:
            control_plane.close()


def serves_state(sidecar: SidecarProcess) -> None:
    saved = sidecar.request("POST", "/v1.0/state/statestore", b'[{"key": "k", "value": "v"}]')
    assert saved.status == 204, saved
    assert sidecar.request("GET", "/v1.0/state/statestore/k").json() == "v"


@pytest.mark.parametrize("sidecars", [(False, "folder"), (False, "control-plane")], indirect=True,
                         ids=["folder", "control-plane"])  # fmt: skip
def test_broken_component_scoped_to_a_leaves_b_healthy(sidecars: dict[str, SidecarProcess]) -> None:
    a, b = sidecars["a"], sidecars["b"]
    assert healthy(b), b.request("GET", "/v1.0/healthz")
    serves_state(b)
    metadata = b.request("GET", "/v1.0/metadata").json()
    assert [c["name"] for c in metadata["components"]] == ["statestore"]  # b never loaded cache
    assert "cache" not in b.log()

    # a's own broken component makes a not ready (daprd would exit), naming the component and reason,
    # while a's other components still serve and calls to the broken one say why.
    not_ready = a.request("GET", "/v1.0/healthz")
    assert not_ready.status == 500 and "component cache" in not_ready.json()["message"]
    serves_state(a)
    broken = a.request("GET", "/v1.0/state/cache/k")
    assert broken.status == 500 and "init failed" in broken.json()["message"]


@pytest.mark.parametrize("sidecars", [(True, "folder"), (True, "control-plane")], indirect=True,
                         ids=["folder", "control-plane"])  # fmt: skip
def test_ignore_errors_keeps_the_scoped_app_healthy(sidecars: dict[str, SidecarProcess]) -> None:
    a, b = sidecars["a"], sidecars["b"]
    assert healthy(a) and healthy(b)
    serves_state(a)
    assert "ignoreErrors" in a.log()
    assert [c["name"] for c in a.request("GET", "/v1.0/metadata").json()["components"]] == ["statestore"]


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), ("true", True), ("false", False), (False, False)]
)
def test_ignore_errors_reads_yaml_strings_as_booleans(value: object, expected: bool) -> None:
    doc = component("cache", "state.redis")
    doc["spec"]["ignoreErrors"] = value
    assert parse_component(doc, "c.yaml").ignore_errors is expected


def test_ignore_errors_that_is_not_a_boolean_is_refused() -> None:
    doc = component("cache", "state.redis")
    doc["spec"]["ignoreErrors"] = "sometimes"
    with pytest.raises(
        ConfigError, match=r"c.yaml: Component 'cache': spec.ignoreErrors must be true or false"
    ):
        parse_component(doc, "c.yaml")
