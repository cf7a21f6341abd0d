"""Sample the server with py-spy over a scenario's measured part, and summarise where time goes.

py-spy runs outside the server (no code change, no cProfile overhead in the
hot path) and is pinned to the generator's core so it does not steal the
server's. The raw (collapsed-stack) output is reduced to two lists: functions
by their own samples (where the CPU is) and by inclusive samples (which
call paths are expensive).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.loadgen import Hooks

SAMPLE_RATE = 250  # samples/s: enough for a 5-20 s scenario, cheap for the sampled process
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class PySpy:
    """Hooks that record `pid` between a scenario's start and stop into `out`."""

    def __init__(
        self,
        pid: int,
        out: Path,
        *,
        gil_only: bool = False,
        rate: int = SAMPLE_RATE,
        core: str = "1",
        max_seconds: int = 900,
        threads: bool = False,
    ) -> None:
        self.pid = pid
        self.gil_only = gil_only
        self.threads = threads  # each stack begins with its thread (summarise: by thread)
        self.rate = rate
        self.out = out
        self.core = core
        self.max_seconds = max_seconds
        self._process: subprocess.Popen[bytes] | None = None

    def hooks(self) -> Hooks:
        return Hooks(self.start, self.stop)

    def start(self) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        command = [
            binary,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--output",
            str(self.out),
            "--nonblocking",
            "--duration",
            str(self.max_seconds),
        ]
        if self.gil_only:
            command.append("--gil")
        if self.threads:
            command.append("--threads")
        if shutil.which("taskset"):
            command = ["taskset", "-c", self.core, *command]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self._process.wait(60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)


def _label(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = "/".join(path.rsplit("/", 2)[-2:])  # e.g. chatd/hub.py
    return f"{match.group('func')} ({path})"


# why: py-spy counts a thread blocked in Condition.wait (each connection's idle writer) as
# active, which would bury the real work under 100 sleeping threads; those samples are
# counted separately and left out of the percentages.
IDLE_LEAVES = ("Condition.wait (", "Event.wait (", "Thread.join (", "_wait_for_tstate_lock (")


def _thread(frame: str) -> str | None:
    """The thread's name from py-spy's `--threads` first frame ("thread (TID): NAME"), its
    first word only: a connection's thread is named after its peer's address."""
    if not frame.startswith("thread ("):
        return None
    name = frame.partition("): ")[2].strip()
    return name.split(" ", 1)[0] or "?"


def summarise(raw: Path | list[Path], top: int = 20) -> dict[str, Any]:
    """Top functions by own and by inclusive samples, as percentages of busy samples.

    Several raw files (the repeats of one scenario) are summed: a fan-out run lasts
    under a second, a few hundred samples, too few for a ranking on their own. With
    stacks recorded `--threads`, also each thread's share and its own top functions.
    """
    raws = raw if isinstance(raw, list) else [raw]
    lines = [line for path in raws for line in path.read_text(errors="replace").splitlines()]
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    own_by_thread: dict[str, Counter[str]] = {}
    inclusive_by_thread: dict[str, Counter[str]] = {}
    total = idle = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = [frame for frame in stack.split(";") if frame]
        thread = _thread(parts[0]) if parts else None
        if thread is not None:
            parts = parts[1:]
        frames = [_label(frame) for frame in parts]
        if not frames:
            continue
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for label in set(frames):
            inclusive[label] += count
        if thread is not None:
            by_thread[thread] += count
            own_by_thread.setdefault(thread, Counter())[frames[-1]] += count
            inclusive_here = inclusive_by_thread.setdefault(thread, Counter())
            for label in set(frames):
                inclusive_here[label] += count

    def table(counter: Counter[str], limit: int = top) -> list[dict[str, Any]]:
        return [
            {"function": label, "samples": n, "percent": round(100.0 * n / total, 1)}
            for label, n in counter.most_common(limit)
        ]

    return {
        "samples": total,
        "idle_samples": idle,
        "own": table(own) if total else [],
        "inclusive": table(inclusive) if total else [],
        # percentages of all busy samples, like the tables above
        "threads": [
            {
                "thread": thread,
                "samples": n,
                "percent": round(100.0 * n / total, 1),
                "own": table(own_by_thread[thread], 8),
                "inclusive": table(inclusive_by_thread[thread], 12),
            }
            for thread, n in by_thread.most_common()
        ],
    }
