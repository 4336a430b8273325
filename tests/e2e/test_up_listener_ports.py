"""A real `mecha up --port-offset N`, in either mode, listens on exactly the ports of the map its port checks,
the unshifted-port notes and the tests' free blocks of ports read (xds/runner/listeners.py): a listener added
to the stack but not to the map would pass the checks and then fail on a busy port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mecha_up import free_offset, interrupt, listening_sockets, read_until, start_up

from xds.runner.listeners import up_listener_ports

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("mode", ["sidecar", "node"])
def test_mecha_up_listens_on_the_ports_of_its_map(tmp_path: Path, mode: str) -> None:
    offset = free_offset()
    proc = start_up(tmp_path, "--mode", mode, "--port-offset", str(offset))
    try:
        read_until(proc, "Mecha is up", 120)
        info = json.loads((tmp_path / ".mecha" / "up.json").read_text())
        pids = [int(c["pid"]) for c in info["children"]]
        listening = {int(address.rsplit(":", 1)[1]) for address in listening_sockets(pids)}
    finally:
        rest = interrupt(proc, 30)
    assert rest is not None, "mecha up did not stop within 30 s of Ctrl-C (killed)"
    mapped = up_listener_ports(mode, offset)
    assert sorted(listening - set(mapped.values())) == [], "listening, not in the map"
    assert {label: port for label, port in mapped.items() if port not in listening} == {}, "in the map, idle"
