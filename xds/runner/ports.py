"""Port checks of `mecha up` before anything starts: offsets that leave 1-65535, and listener ports in the
kernel's ephemeral range (where an outgoing connection of any process can hold one for a moment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SYSCTL_DIR = Path("/proc/sys/net/ipv4")


@dataclass(frozen=True)
class EphemeralRange:
    low: int
    high: int
    reserved: frozenset[int] = frozenset()  # ip_local_reserved_ports: never handed to outgoing connections

    def holds(self, port: int) -> bool:
        return self.low <= port <= self.high and port not in self.reserved


def parse_port_list(text: str) -> frozenset[int]:
    """ip_local_reserved_ports syntax: "8080,50000-50299" (empty: none)."""
    ports: set[int] = set()
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return frozenset(ports)


def read_ephemeral_range(sysctl_dir: Path = SYSCTL_DIR) -> EphemeralRange | None:
    """The Linux ephemeral range minus its reserved ports; None where /proc does not say (not Linux)."""
    try:
        low, high = (int(v) for v in (sysctl_dir / "ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return None
    try:
        reserved = parse_port_list((sysctl_dir / "ip_local_reserved_ports").read_text())
    except (OSError, ValueError):
        reserved = frozenset()
    return EphemeralRange(low, high, reserved)


def compact(ports: list[int]) -> str:
    """[50001, 50002, 50003, 50101] -> "50001-50003, 50101"."""
    runs: list[list[int]] = []
    for port in sorted(set(ports)):
        if runs and port == runs[-1][1] + 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def out_of_range(ports: dict[str, int]) -> str | None:
    """Refusal message when a port is not a TCP port (a --port-offset too large or negative)."""
    bad = {label: port for label, port in ports.items() if not 1 <= port <= 65535}
    if not bad:
        return None
    shown = ", ".join(f"{port} ({label})" for label, port in list(bad.items())[:4])
    return f"--port-offset puts ports outside 1-65535: {shown}; choose a smaller offset"


def ephemeral_warning(ports: dict[str, int], rng: EphemeralRange | None) -> str | None:
    """A warning (mecha up still starts: the default gRPC ports sit in Linux's default range, and a port that
    is actually taken is refused by the preflight) naming the range, the ports and how to reserve them."""
    if rng is None:
        return None
    inside = sorted(port for port in ports.values() if rng.holds(port))
    if not inside:
        return None
    return (
        f"warning (not refused): listener ports {compact(inside)} are in the kernel's ephemeral port range "
        f"{rng.low}-{rng.high} (net.ipv4.ip_local_port_range) and not reserved, so an outgoing connection "
        "can take one and its listener then fails to bind (the supervisor retries). Reserve them as root: "
        f"`sysctl -w net.ipv4.ip_local_reserved_ports={inside[0]}-{inside[-1]}`, or pick a --port-offset "
        f"that keeps every port below {rng.low}."
    )
