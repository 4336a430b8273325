"""A process's memory and CPU as Linux reports them in /proc, for the benches (one reader for all of them).

A process that has ended raises OSError (FileNotFoundError: its /proc entry is gone); a zombie has no memory
lines left, so its RSS reads 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/<pid>/stat's CPU times


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after "pid (comm) ": the command name may hold spaces and parentheses."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def rss_mb(pid: int | None = None, field: str = "VmRSS") -> float:
    """A memory line of /proc/<pid>/status in MiB (this process by default): VmRSS, the resident set now, or
    VmHWM, its peak so far."""
    for line in Path(f"/proc/{'self' if pid is None else pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads; this process by default)."""
    fields = _stat_fields("self" if pid is None else pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


@dataclass(frozen=True)
class ProcCpu:
    pid: int
    argv: list[str]  # /proc/<pid>/cmdline (after an exec, the new program's)
    cpu_s: float  # its own user + system CPU seconds, all threads
    reaped_cpu_s: float  # what its children that have exited used (counted in it once reaped)


def tree_processes(root: int) -> list[ProcCpu]:
    """root and every live descendant, as /proc reads now (root first); a process that ends meanwhile is
    left out."""
    parents: dict[int, int] = {}
    found: dict[int, ProcCpu] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        try:
            fields = _stat_fields(pid)
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue  # ended meanwhile
        parents[pid] = int(fields[1])
        own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime stime
        reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS  # cutime cstime
        found[pid] = ProcCpu(pid, argv, own, reaped)
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in found:
            tree.append(found[pid])
        frontier += [child for child, parent in parents.items() if parent == pid]
    return tree


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by root and every live descendant, plus what their exited children used
    (counted in the parent once reaped): the work the machine's cores had to do."""
    return sum(p.cpu_s + p.reaped_cpu_s for p in tree_processes(root))
