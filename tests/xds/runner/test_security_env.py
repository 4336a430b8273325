"""MECHA_MTLS and MECHA_INSECURE_XDS are read one way (xds/controlplane/security_env.py): `mecha up`, which
makes the CA root and signing key before the control plane starts when the control plane will run its CA,
and the control plane's Settings.from_env give the same answer for the same values, and the same error for
an invalid one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xds.controlplane.security_env import ENV_INSECURE_XDS, ENV_MTLS
from xds.controlplane.settings import Settings
from xds.demo.config import default_layout
from xds.runner.stack import Stack, StackError, StackOptions
from xds.testing.up_ports import free_offset

VALID = [
    {},
    {ENV_MTLS: "0"},
    {ENV_MTLS: "off"},
    {ENV_MTLS: " FALSE "},
    {ENV_MTLS: "1"},
    {ENV_MTLS: ""},
    {ENV_INSECURE_XDS: "1"},
    {ENV_INSECURE_XDS: "yes", ENV_MTLS: "1"},  # the CA without agents: nothing made before it starts
    {ENV_INSECURE_XDS: "0"},  # secure xDS: the CA runs (mecha up took any value for "insecure")
    {ENV_INSECURE_XDS: "false", ENV_MTLS: "0"},
]
INVALID = [{ENV_MTLS: "maybe"}, {ENV_INSECURE_XDS: "2"}, {ENV_INSECURE_XDS: "0", ENV_MTLS: "enabled"}]


def _set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in (ENV_MTLS, ENV_INSECURE_XDS):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _stack(state_dir: Path) -> Stack:
    layout = default_layout("sidecar")
    return Stack(StackOptions(layout=layout, state_dir=state_dir, api_port=1, xds_port=2))


def _label(env: dict[str, str]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in env.items()) or "unset"


@pytest.mark.parametrize("env", VALID, ids=_label)
def test_mecha_up_makes_the_identity_early_exactly_when_the_control_plane_runs_its_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    _set_env(monkeypatch, env)
    settings = Settings.from_env()
    made = _stack(tmp_path)._identity_made_early(True)
    assert made == (settings.mtls and not settings.insecure_xds)
    assert (tmp_path / "ca" / "root-cert.pem").exists() == made


@pytest.mark.parametrize("env", INVALID, ids=_label)
def test_an_invalid_value_is_the_same_error_from_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    _set_env(monkeypatch, env)
    with pytest.raises(ValueError) as control_plane:
        Settings.from_env()
    with pytest.raises(StackError) as runner:
        _stack(tmp_path)._identity_made_early(False)  # read even when nothing would be made early
    assert str(runner.value) == str(control_plane.value)
    assert str(control_plane.value).startswith("environment variable MECHA_")
    assert not (tmp_path / "ca").exists()


def test_mecha_up_refuses_an_invalid_value_before_it_starts_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_MTLS, ENV_INSECURE_XDS)}
    run = subprocess.run(
        [sys.executable, "-m", "xds.cli", "up", "--port-offset", str(free_offset())],
        cwd=tmp_path, env={**env, ENV_MTLS: "maybe"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "mecha up failed: environment variable MECHA_MTLS='maybe'" in run.stdout, run.stdout
    assert "[ready]" not in run.stdout
    assert not (tmp_path / ".mecha" / "logs" / "control-plane.log").exists()  # nothing was started
