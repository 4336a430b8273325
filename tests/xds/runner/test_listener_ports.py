"""One map of the ports `mecha up` binds (xds/runner/listeners.py): the stack's start-up checks, the
unshifted-port notes of a user's config and the tests' free blocks of ports read the same map, and every
address `mecha up` writes to up.json is on one of its ports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from xds.cli.main import build_parser
from xds.demo.config import demo_secret_env
from xds.runner import up
from xds.runner.config_ports import moved_ports
from xds.runner.stack import Stack, StackOptions
from xds.testing.up_ports import up_ports

MODES = ("sidecar", "node")
OFFSETS = (0, 2345)
_LOOPBACK_PORT = re.compile(r"127\.0\.0\.1:(\d+)")


def mecha_up_options(state_dir: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> StackOptions:
    """The StackOptions `mecha up ARGV` builds (its run_up, up to where it would start the stack)."""
    built: list[StackOptions] = []

    async def keep(options: StackOptions, _within_s: float, _notes: list[str]) -> int:
        built.append(options)
        return 0

    monkeypatch.setattr(up, "_up", keep)
    for key in demo_secret_env():  # run_up sets the demo's secrets: undone after the test
        monkeypatch.delenv(key, raising=False)
    args = build_parser().parse_args(["up", *argv, "--state-dir", str(state_dir)])
    assert up.run_up(args) == 0
    (options,) = built
    return options


def _ports_in(node: Any) -> set[int]:
    """Every 127.0.0.1:PORT in up.json's fields (URLs and host:port)."""
    if isinstance(node, dict):
        return set().union(*(_ports_in(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_ports_in(v) for v in node))
    return {int(p) for p in _LOOPBACK_PORT.findall(node)} if isinstance(node, str) else set()


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("mode", MODES)
def test_the_stack_config_notes_and_test_helper_read_one_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, offset: int
) -> None:
    stack = Stack(
        mecha_up_options(tmp_path / ".mecha", monkeypatch, "--mode", mode, "--port-offset", str(offset))
    )
    bound = stack.all_ports()
    assert len(set(bound.values())) == len(bound)  # no port twice (check_ports refuses that)
    # the notes on a user's config: default port -> (label, where --port-offset moved it)
    assert {label: now for label, now in moved_ports(mode, offset).values()} == bound
    assert up_ports(offset, mode) == list(bound.values())


@pytest.mark.parametrize("mode", MODES)
def test_every_address_mecha_up_writes_to_up_json_is_in_the_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    stack = Stack(mecha_up_options(tmp_path / ".mecha", monkeypatch, "--mode", mode, "--port-offset", "700"))
    written = _ports_in(stack.describe())  # what _write_state puts in up.json
    assert len(written) > 10, written
    assert written <= set(stack.all_ports().values()), sorted(written - set(stack.all_ports().values()))


def test_the_unshifted_port_note_names_the_control_plane_by_the_stack_label() -> None:
    assert moved_ports("sidecar", 100)[15010] == ("control plane API", 15110)
    assert moved_ports("node", 100)[15012] == ("control plane xDS", 15112)
