"""The bindings contract, run against every backend in tests/conformance/config/bindings.yaml."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from capabilities import registry
from capabilities.blocks.bindings import service
from capabilities.blocks.bindings.contract import (
    BindingBackendError,
    Feature,
    InputBinding,
    InvokeRequest,
    OutputBinding,
)
from capabilities.daprspec.component import ComponentSpec
from capabilities.errors import DaprError


def make(row: dict[str, Any], tmp: Path, unique: str, **override: str) -> Any:
    meta = {
        k: v.replace("{tmp}", str(tmp)).replace("{unique}", unique)
        for k, v in {**row.get("metadata", {}), **override}.items()
    }
    spec = ComponentSpec(
        name=f"conf-{row['name']}",
        type=row["type"],
        metadata=meta,
        source="tests/conformance/config/bindings.yaml",
    )
    return registry.create(spec)


class FakeRuntime:
    """Just enough runtime for the bindings block service: one named component."""

    def __init__(self, name: str, component: Any):
        self._components = {name: component}

    def component(self, block: str, name: str) -> Any:
        if name not in self._components:
            raise DaprError("ERR_BINDING_NOT_FOUND", f"couldn't find output binding {name}", 404)
        return self._components[name]


@pytest.fixture
async def binding(row: dict[str, Any], tmp_path: Path, unique: str) -> AsyncIterator[Any]:
    component = make(row, tmp_path, unique)
    await component.init()
    try:
        yield component
    finally:
        await component.close()


async def test_features_and_operations_match_the_table(
    row: dict[str, Any], tmp_path: Path, unique: str
) -> None:
    component = make(row, tmp_path, unique)
    declared = {str(f) for f in component.features()}
    assert declared == set(row["features"])
    assert isinstance(component, OutputBinding) == (Feature.OUTPUT in declared)
    assert isinstance(component, InputBinding) == (Feature.INPUT in declared)
    if isinstance(component, OutputBinding):
        assert sorted(component.operations()) == sorted(row["operations"])


async def test_unsupported_operation_is_refused_naming_the_supported_ones(
    row: dict[str, Any], binding: Any
) -> None:
    if not isinstance(binding, OutputBinding):
        pytest.skip("input-only binding")
    runtime = FakeRuntime("b", binding)
    with pytest.raises(DaprError) as info:
        await service.invoke(runtime, "b", InvokeRequest(operation="explode"))
    assert info.value.error_code == "ERR_INVOKE_OUTPUT_BINDING"
    assert "explode" in info.value.message and row["operations"][0] in info.value.message


async def test_output_then_input_roundtrip(row: dict[str, Any], binding: Any) -> None:
    if not row.get("roundtrip"):
        pytest.skip("not an input+output binding")
    got: list[bytes] = []

    async def handler(data: bytes, metadata: dict[str, str]) -> bytes | None:
        got.append(data)
        return None

    stop = await binding.read(handler)
    await asyncio.sleep(0.2)
    for i in range(3):
        await binding.invoke(InvokeRequest(operation="create", data=f"event-{i}".encode()))
    async with asyncio.timeout(10):
        while len(got) < 3:  # noqa: ASYNC110 - the broker gives no completion signal
            await asyncio.sleep(0.02)
    assert sorted(got) == [b"event-0", b"event-1", b"event-2"]
    await stop()


async def test_input_event_is_redelivered_when_the_app_fails(row: dict[str, Any], binding: Any) -> None:
    if not row.get("roundtrip"):
        pytest.skip("not an input+output binding")
    attempts: list[bytes] = []

    async def flaky(data: bytes, metadata: dict[str, str]) -> bytes | None:
        attempts.append(data)
        if len(attempts) == 1:
            raise RuntimeError("app is down")
        return None

    stop = await binding.read(flaky)
    await asyncio.sleep(0.2)
    await binding.invoke(InvokeRequest(operation="create", data=b"again"))
    async with asyncio.timeout(10):
        while attempts.count(b"again") < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await stop()


async def test_input_binding_fires_and_stops(row: dict[str, Any], binding: Any) -> None:
    if row["name"] != "cron":
        pytest.skip("schedule-driven input only")
    ticks: list[dict[str, str]] = []

    async def handler(data: bytes, metadata: dict[str, str]) -> bytes | None:
        ticks.append(metadata)
        return None

    stop = await binding.read(handler)
    async with asyncio.timeout(5):
        while len(ticks) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await stop()
    seen = len(ticks)
    await asyncio.sleep(0.5)
    assert len(ticks) == seen, "no tick after stop()"
    assert "readTimeUTC" in ticks[0]


async def test_server_down_is_a_backend_error(row: dict[str, Any], tmp_path: Path, unique: str) -> None:
    down = row.get("down_metadata")
    if not down:
        pytest.skip("no server to take down")
    component = make(row, tmp_path, unique, **down)
    with pytest.raises(BindingBackendError) as info:
        await asyncio.wait_for(component.init(), 15)
    assert "127.0.0.1:1" in str(info.value) or "not reachable" in str(info.value)
    with contextlib.suppress(Exception):
        await component.close()
