"""Fixtures for the gRPC API tests (the harness itself is in grpc_harness.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from grpc_harness import Sidecar, start_sidecar, write_resources


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    resources = write_resources(tmp_path_factory.mktemp("grpc") / "resources")
    sc, stop = start_sidecar(resources)
    saved = {k: os.environ.get(k) for k in sc.env()}
    os.environ.update(sc.env())
    try:
        yield sc
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop()
