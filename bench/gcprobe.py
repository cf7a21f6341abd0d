"""How much of a chatd run goes to Python's cyclic garbage collector, without changing chatd.

`--gc-stats` starts each chatd through a small wrapper script (written to a
temporary directory, run by the same interpreter as the chatd executable it
wraps) that registers a `gc.callbacks` hook and then runs that executable's
own script in-process (`runpy`), so a wrapper around chatd can be probed
too. The hook counts collections per generation and times them, only
between the runner's start and stop of the measured part, which it is told
through a FIFO (chatd's main thread sits in `sigwait`, so a
Python signal handler would never run; a blocked `read` costs nothing).

Why: in the fourth round the collector took a third of the server's CPU in
the 10 x 20 fan-out, and neither py-spy (which charges a collection to the
Python line whose allocation triggered it) nor `bench.stages` (one process,
no full collection) showed it. This puts the figure in every run's JSON.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

WAIT_FOR_REPORT = 5.0  # seconds; a server that does not answer gives no figure, not a hang

# The wrapper. It must import nothing of the bench (it runs in the server's interpreter,
# which may be another venv) and must leave chatd's own start-up as it is.
WRAPPER = '''\
#!{python}
"""chatd under the bench's collector probe (bench/gcprobe.py); written for one run."""
import gc
import json
import os
import runpy
import threading
import time

_CHATD = {chatd!r}
_FIFO = {fifo!r}
_REPORT = {report!r}
_state = {{"active": False, "started": 0.0, "seconds": [0.0, 0.0, 0.0],
          "collections": [0, 0, 0], "collected": [0, 0, 0]}}


def _hook(phase, info):
    if not _state["active"]:
        return
    if phase == "start":
        _state["started"] = time.perf_counter()
        return
    generation = info["generation"]
    _state["seconds"][generation] += time.perf_counter() - _state["started"]
    _state["collections"][generation] += 1
    _state["collected"][generation] += info["collected"]


def _control():
    while True:
        with open(_FIFO, "rb") as fifo:
            for command in fifo.read().split():
                if command == b"start":
                    _state.update(seconds=[0.0, 0.0, 0.0], collections=[0, 0, 0],
                                  collected=[0, 0, 0], active=True)
                elif command == b"stop":
                    _state["active"] = False
                    report = {{key: _state[key] for key in ("seconds", "collections", "collected")}}
                    report["tracked"] = len(gc.get_objects())
                    report["thresholds"] = list(gc.get_threshold())
                    with open(_REPORT + ".tmp", "w") as out:
                        json.dump(report, out)
                    os.replace(_REPORT + ".tmp", _REPORT)


gc.callbacks.append(_hook)
threading.Thread(target=_control, name="bench-gc-probe", daemon=True).start()
runpy.run_path(_CHATD, run_name="__main__")
'''


def interpreter_of(executable: str) -> str:
    """The Python a console script runs with (its `#!` line)."""
    with open(executable, "rb") as script:
        first = script.readline().decode(errors="replace").strip()
    if not first.startswith("#!") or "python" not in first:
        raise RuntimeError(f"{executable} is not a Python console script; --gc-stats needs one")
    return first[2:].strip().split()[0]


class GcProbe:
    """A wrapper around one chatd executable, and the hooks that read its collector."""

    def __init__(self, chatd: str, directory: Path) -> None:
        self.fifo = directory / "gc-control"
        self.report = directory / "gc-report.json"
        os.mkfifo(self.fifo, 0o600)
        self.wrapper = directory / "chatd"
        self.wrapper.write_text(
            WRAPPER.format(
                python=interpreter_of(chatd),
                chatd=chatd,
                fifo=str(self.fifo),
                report=str(self.report),
            )
        )
        self.wrapper.chmod(self.wrapper.stat().st_mode | stat.S_IXUSR)

    def _tell(self, command: str) -> None:
        # why: O_NONBLOCK fails at once (ENXIO) when no server is reading, instead of hanging
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            os.write(fd, command.encode() + b"\n")
        finally:
            os.close(fd)

    def start(self) -> None:
        self.report.unlink(missing_ok=True)
        self._tell("start")

    def stop(self) -> None:
        self._tell("stop")

    def result(self, server_cpu_s: float | None) -> dict[str, Any] | None:
        """The collector's figures over the measured part; None if the server never said."""
        deadline = time.monotonic() + WAIT_FOR_REPORT
        while not self.report.exists():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        data: dict[str, Any] = json.loads(self.report.read_text())
        seconds = sum(data["seconds"])
        data["seconds"] = [round(s, 4) for s in data["seconds"]]
        data["total_s"] = round(seconds, 4)
        data["share_of_server_cpu"] = round(seconds / server_cpu_s, 3) if server_cpu_s else None
        return data
