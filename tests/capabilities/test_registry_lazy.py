"""The registry imports only the backend a component needs (sidecar start-up time), and its static
type -> module table matches what the backend modules register."""

from __future__ import annotations

import subprocess
import sys

from capabilities import registry


def test_table_matches_the_registered_backends() -> None:
    registry.load_backends()
    registered = {t for t, _ in registry._FACTORIES if not t.endswith("-for-tests")}
    assert registered == set(registry.BACKEND_MODULES)
    for component_type, module in registry.BACKEND_MODULES.items():
        factory = registry._FACTORIES[(component_type, "v1")]
        assert factory.__module__ == module, component_type


def test_creating_an_in_memory_component_imports_no_client_library() -> None:
    code = (
        "import sys\n"
        "from capabilities import registry\n"
        "from capabilities.daprspec.component import ComponentSpec\n"
        "registry.create(ComponentSpec(name='s', type='state.in-memory'))\n"
        "libs = ('redis', 'nats', 'aio_pika', 'asyncpg', 'aiomqtt', 'croniter')\n"
        "heavy = [m for m in libs if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"


def test_unknown_type_still_names_the_known_ones() -> None:
    from capabilities.daprspec.component import ComponentSpec
    from capabilities.errors import DaprError

    try:
        registry.create(ComponentSpec(name="x", type="state.nope"))
    except DaprError as err:
        assert "state.nope/v1 is not supported" in err.message and "state.redis/v1" in err.message
    else:
        raise AssertionError("an unknown type was accepted")
