"""What a server process costs, read from /proc: CPU seconds and resident memory.

Figures are per process (all threads together), so a slow load generator on
another core cannot flatter the server: the scenarios divide work by these.

CPU comes from two places. `/proc/PID/stat` counts user and system time in
10 ms ticks, for every thread the process ever had; `/proc/PID/task/*/schedstat`
counts each live thread's time on a CPU in nanoseconds. A fan-out run on
InspIRCd costs it about 50 ms, five ticks, so the tick count alone would move
its figure in 20% steps; the meter takes the nanosecond sum whenever it agrees
with the ticks, i.e. no thread that ran in between has ended and taken its time
with it.
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


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Nanoseconds on a CPU so far of each live thread of `pid` (tid -> ns)."""
    times: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended while we looked: its time is only in the ticks
    return times


# why: the tick figure is truncated to whole ticks at both ends, so the nanosecond sum of
# the same time may be up to one tick (plus rounding) above or below it.
TICK_SLACK_S = 1.5 / _CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This process's user + system CPU time: shows when the generator itself saturates."""
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU seconds a process spends between `start()` and `stop()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = (0.0, 0.0)
        self._start_ns: dict[int, int] = {}
        self._own_start = 0.0
        self.server = 0.0  # the nanosecond sum when it is sound, else the ticks
        self.server_ticks = 0.0  # from /proc/PID/stat alone, 10 ms steps
        self.server_exact: float | None = None  # from schedstat, None when unusable
        self.server_system = 0.0  # the kernel's part (ticks): syscalls, TCP, wake-ups
        self.generator = 0.0

    def start(self) -> None:
        self._start_ns = thread_cpu_ns(self.pid)
        self._start = cpu_times(self.pid)
        self._own_start = own_cpu_seconds()

    def stop(self) -> None:
        user, system = cpu_times(self.pid)
        stop_ns = thread_cpu_ns(self.pid)
        self.server_ticks = user + system - sum(self._start)
        self.server_system = system - self._start[1]
        self.generator = own_cpu_seconds() - self._own_start
        exact = sum(ns - self._start_ns.get(tid, 0) for tid, ns in stop_ns.items()) / 1e9
        # why: a thread that ran and ended in between took its nanoseconds with it; then
        # the sum falls short of the ticks, and only the ticks are whole.
        ended = any(tid not in stop_ns for tid in self._start_ns)
        if not ended and exact >= self.server_ticks - TICK_SLACK_S:
            self.server_exact = exact
            self.server = exact
        else:
            self.server_exact = None
            self.server = self.server_ticks
