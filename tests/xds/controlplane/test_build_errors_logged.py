"""Build errors (a Gateway credentialName with no files...) are logged once each, and what the control plane
remembers of them stays bounded: error texts name documents, so a long-running control plane sees endless
distinct ones."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from xds.controlplane.runtime import LOGGED_ERRORS_KEEP, ControlPlane
from xds.controlplane.settings import Settings
from xds.diagnostics import Diagnostic, Location
from xds.proxy import ProxyIdentity


class ErringBuilder:
    """Builds no snapshot; reports the given errors as a real builder's `warnings`."""

    def __init__(self) -> None:
        self.warnings: list[Diagnostic] = []

    def build(self, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        return {}


def error(name: str) -> Diagnostic:
    return Diagnostic(Location(kind="Gateway", name=name), "", "credentialName: no certificate files")


async def test_each_build_error_is_logged_once_and_the_memory_is_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cp = ControlPlane(Settings(api_port=0, xds_port=0, state_dir=tmp_path, watch=False, insecure_xds=True))
    builder = ErringBuilder()
    cp.builder = builder
    proxy = ProxyIdentity("gw")
    try:
        with caplog.at_level(logging.ERROR, logger="mecha.controlplane"):
            builder.warnings = [error("gw-0")]
            await cp._build_and_set([proxy])
            await cp._build_and_set([proxy])  # the same error again: not logged again
            logged = [r.getMessage() for r in caplog.records if r.name == "mecha.controlplane"]
            assert logged.count(str(error("gw-0"))) == 1
            for i in range(1, 2 * LOGGED_ERRORS_KEEP):  # gateways come and go, each with its error
                builder.warnings = [error(f"gw-{i}")]
                await cp._build_and_set([proxy])
        assert len(cp._logged_errors) <= LOGGED_ERRORS_KEEP
        logged = [r.getMessage() for r in caplog.records if r.name == "mecha.controlplane"]
        assert len(logged) == len(set(logged)) == 2 * LOGGED_ERRORS_KEEP  # every distinct error, once
    finally:
        await cp.store.close()
