"""Fixtures of the deployment tests (helpers live in deploy_helpers.py)."""

from __future__ import annotations

from types import ModuleType

import pytest
from deploy_helpers import compose_module


@pytest.fixture(scope="session")
def render() -> ModuleType:
    return compose_module("render")


@pytest.fixture(scope="session")
def topology() -> ModuleType:
    return compose_module("topology")
