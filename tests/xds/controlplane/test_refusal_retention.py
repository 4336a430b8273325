"""Refused changes leave nothing behind: the heap after many different refusals is the heap after one.

A refused plan, its diagnostics and the parsed documents must die with the answer; anything keyed by
document or diagnostic text would grow here (bench/apply_memory_bench.py measures the process's RSS).
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings

REFUSALS = 60
# Objects a batch of refusals may leave (interned strings, logging, allocator noise); one kept refused plan
# is hundreds of objects, so 60 of them cannot hide under this.
TOLERANCE = 300


def refused_change(i: int) -> tuple[str, str]:
    """A different refused document each time (unknown field, RE2-refused regex, invalid YAML)."""
    name = f"bad-{i}"
    route = [{"destination": {"host": f"{name}.default.svc.cluster.local"}}]
    http: list[dict[str, object]] = [{"route": route}]
    if i % 3 == 0:
        http[0][f"retriez{i}"] = {"attempts": i}
    elif i % 3 == 1:
        http[0]["match"] = [{"uri": {"regex": f"(?=x{i})"}}]
    else:
        return f"{name}.yaml", f"kind: VirtualService\nmetadata: {{name: {name}\n  spec: [unclosed {i}\n"
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [f"{name}.default.svc.cluster.local"], "http": http},
    }
    return f"{name}.yaml", json.dumps(doc)


def live_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def test_refused_changes_keep_no_objects(tmp_path: Path) -> None:
    settings = Settings(xds_port=0, watch=False, state_dir=tmp_path / "state")
    settings.insecure_xds = True
    cp = ControlPlane(settings)
    await cp.start()
    try:
        for i in range(6):  # warm-up: every kind of refusal once (imports, caches)
            assert not (await cp.apply([refused_change(i)]))["accepted"]
        before = live_objects()
        for i in range(6, 6 + REFUSALS):
            outcome = await cp.apply([refused_change(i)])
            assert not outcome["accepted"] and outcome["diagnostics"]
        kept = live_objects() - before
        assert kept < TOLERANCE, f"{kept} objects kept by {REFUSALS} refused changes"
        assert cp.store.version == 0
    finally:
        await cp.stop()
