"""`mecha up` port checks: the ephemeral range (read from the kernel's sysctls) and impossible offsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.demo.config import default_layout
from xds.runner.ports import (
    EphemeralRange,
    compact,
    ephemeral_warning,
    out_of_range,
    parse_port_list,
    read_ephemeral_range,
)
from xds.runner.stack import Stack, StackError, StackOptions


def _sysctls(tmp_path: Path, port_range: str, reserved: str) -> Path:
    (tmp_path / "ip_local_port_range").write_text(port_range)
    (tmp_path / "ip_local_reserved_ports").write_text(reserved)
    return tmp_path


def test_reads_the_range_minus_reserved_ports(tmp_path: Path) -> None:
    rng = read_ephemeral_range(_sysctls(tmp_path, "32768\t60999\n", "8080,50000-50299\n"))
    assert rng == EphemeralRange(32768, 60999, frozenset({8080, *range(50000, 50300)}))
    assert rng.holds(40000) and not rng.holds(50001) and not rng.holds(15010)
    assert read_ephemeral_range(tmp_path / "missing") is None
    assert parse_port_list("\n") == frozenset()


def test_default_grpc_ports_warn_with_the_range_unless_reserved(tmp_path: Path) -> None:
    layout = default_layout("sidecar", 0)
    ports = {**layout.ports(), **layout.capability_ports()}
    warning = ephemeral_warning(ports, read_ephemeral_range(_sysctls(tmp_path, "32768 60999", "")))
    assert warning is not None and warning.startswith("warning (not refused)")
    assert "32768-60999" in warning and "50001-50004" in warning and "ip_local_reserved_ports" in warning
    reserved = read_ephemeral_range(_sysctls(tmp_path, "32768 60999", "50000-50299"))
    assert ephemeral_warning(ports, reserved) is None


def test_an_offset_into_the_range_is_named(tmp_path: Path) -> None:
    rng = read_ephemeral_range(_sysctls(tmp_path, "32768 60999", "50000-50299"))
    layout = default_layout("sidecar", 20000)
    warning = ephemeral_warning({"control plane API": DEFAULT_API_PORT + 20000, **layout.ports()}, rng)
    assert warning is not None and str(DEFAULT_API_PORT + 20000) in warning and "below 32768" in warning


def test_compact_runs() -> None:
    assert compact([50003, 50001, 50002, 50101]) == "50001-50003, 50101"


@pytest.mark.parametrize("offset", [60000, -16000])
def test_an_offset_outside_the_tcp_ports_is_refused(tmp_path: Path, offset: int) -> None:
    message = out_of_range({"x": 15010 + offset})
    assert message is not None and "outside 1-65535" in message and "--port-offset" in message
    options = StackOptions(
        layout=default_layout("sidecar", offset),
        state_dir=tmp_path,
        api_port=DEFAULT_API_PORT + offset,
        xds_port=DEFAULT_XDS_PORT + offset,
    )
    with pytest.raises(StackError, match="outside 1-65535"):
        Stack(options).check_ports()
