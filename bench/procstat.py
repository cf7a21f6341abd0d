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
    """CPU seconds that one or more processes spend between `start()` and `stop()`.

    With several processes (the nodes of a cluster) the figures are their sum,
    each process's own in `per_process`; each is taken as for one process (the
    nanosecond sum when it is sound, else its ticks).
    """

    def __init__(self, pid: int, *more: int) -> None:
        self.pid = pid
        self.pids = (pid, *more)
        self._start: dict[int, tuple[float, float]] = {}
        self._start_ns: dict[int, dict[int, int]] = {}
        self._own_start = 0.0
        self.server = 0.0  # the nanosecond sum when it is sound, else the ticks
        self.server_ticks = 0.0  # from /proc/PID/stat alone, 10 ms steps
        self.server_exact: float | None = None  # from schedstat, None when unusable
        self.server_system = 0.0  # the kernel's part (ticks): syscalls, TCP, wake-ups
        self.per_process: list[float] = []  # `server` of each pid, in order
        self.generator = 0.0

    def start(self) -> None:
        for pid in self.pids:
            self._start_ns[pid] = thread_cpu_ns(pid)
            self._start[pid] = cpu_times(pid)
        self._own_start = own_cpu_seconds()

    def stop(self) -> None:
        stopped = {pid: (cpu_times(pid), thread_cpu_ns(pid)) for pid in self.pids}
        self.generator = own_cpu_seconds() - self._own_start
        self.per_process = []
        self.server_ticks = self.server_system = 0.0
        exact_sum: float | None = 0.0
        for pid, ((user, system), stop_ns) in stopped.items():
            start_ns = self._start_ns[pid]
            ticks = user + system - sum(self._start[pid])
            self.server_ticks += ticks
            self.server_system += system - self._start[pid][1]
            exact = sum(ns - start_ns.get(tid, 0) for tid, ns in stop_ns.items()) / 1e9
            # why: a thread that ran and ended in between took its nanoseconds with it; then
            # the sum falls short of the ticks, and only the ticks are whole.
            ended = any(tid not in stop_ns for tid in start_ns)
            if not ended and exact >= ticks - TICK_SLACK_S:
                self.per_process.append(exact)
                if exact_sum is not None:
                    exact_sum += exact
            else:
                self.per_process.append(ticks)
                exact_sum = None
        self.server_exact = exact_sum
        self.server = sum(self.per_process)


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (of its main thread, which forks them all)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _reaped_children_seconds(pid: int) -> float:
    """CPU of `pid`'s children that ended and were waited for (cutime + cstime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """CPU of one process so far, the nanoseconds of its live threads; 0 when it is gone.

    Meant for PostgreSQL's processes and redis-server, whose threads live as long
    as they do (a thread that ended would take its time with it).
    """
    try:
        return sum(thread_cpu_ns(pid).values()) / 1e9
    except OSError:
        return 0.0


class TreeMeter:
    """CPU of a process and all its children between `start()` and `stop()`: a PostgreSQL
    server (the postmaster forks a backend per connection, and its helpers).

    Children alive at both ends count their difference, those born in between all
    of theirs; one that ended in between is counted through the parent's
    `cutime`/`cstime` (all of its life), less what it had at the start.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: dict[int, float] = {}
        self._reaped_start = 0.0
        self.seconds = 0.0
        self.processes = 0  # how many were alive at the end

    def _snapshot(self) -> dict[int, float]:
        pids = [self.pid, *children(self.pid)]
        return {pid: process_cpu_seconds(pid) for pid in pids}

    def start(self) -> None:
        self._reaped_start = _reaped_children_seconds(self.pid)
        self._start = self._snapshot()

    def stop(self) -> None:
        now = self._snapshot()
        reaped = _reaped_children_seconds(self.pid) - self._reaped_start
        live = sum(seconds - self._start.get(pid, 0.0) for pid, seconds in now.items())
        ended = sum(seconds for pid, seconds in self._start.items() if pid not in now)
        self.seconds = max(0.0, live + reaped - ended)
        self.processes = len(now)


def tasks_of(pid: int) -> list[int]:
    """Every thread (task) id of `pid`, itself included."""
    try:
        return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []
