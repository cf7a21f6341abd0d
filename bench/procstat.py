"""What a server process costs, read from /proc: CPU seconds and resident memory.

Figures are per process (all threads together), so a slow load generator on
another core cannot flatter the server: the scenarios divide work by these.
"""

from __future__ import annotations

import os
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of `pid` so far (all its threads, live or ended), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # why: the command name (field 2) may hold spaces; fields after its ')' are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def status_field(pid: int, name: str) -> int:
    """An integer field of /proc/PID/status (VmRSS in KiB, Threads, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    raise KeyError(f"{name} not in /proc/{pid}/status")


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS)."""
    return status_field(pid, "VmRSS")


def own_cpu_seconds() -> float:
    """This process's user + system CPU time: shows when the generator itself saturates."""
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU seconds a process spends between `start()` and `stop()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = (0.0, 0.0)
        self._own_start = 0.0
        self.server = 0.0
        self.server_system = 0.0  # the kernel's part of `server`: syscalls, TCP, wake-ups
        self.generator = 0.0

    def start(self) -> None:
        self._start = cpu_times(self.pid)
        self._own_start = own_cpu_seconds()

    def stop(self) -> None:
        user, system = cpu_times(self.pid)
        self.server = user + system - sum(self._start)
        self.server_system = system - self._start[1]
        self.generator = own_cpu_seconds() - self._own_start
