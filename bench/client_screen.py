"""The full-screen client at scale (issue 17): scrollback memory, redraw time and CPU under load.

    .venv/bin/python -m bench.client_screen                  # 50,000 lines, 20 rooms, 200/s
    .venv/bin/python -m bench.client_screen --duration 5 --naive-duration 3   # a quick look

Everything runs the client's own code (client/chat.py, client/screen.py,
client/timeline.py) with a stand-in session in place of the connection: each
message is a server frame encoded as JSON, decoded by chatd.protocol's
`parse_json_line` as the reader thread does, and handed to `Chat.event`.

1. Memory, each in a fresh child process: 50,000 messages (`--messages`) in
   20 rooms (`--rooms`) fed through `Chat.event` into a `ScreenDisplay`;
   what the scrollback holds (tracemalloc, and separately the RSS delta in a
   run without tracemalloc, whose own bookkeeping would inflate RSS), then
   after each room's visible page was drawn once (its lines cached), then
   with every line of every room drawn (the worst case: the user paged
   through everything).
2. Redraw time: the real prompt_toolkit Application of
   `client.screen.build_application`, its input a pipe (`create_pipe_input`)
   and its output a real `Vt100_Output` of a fixed size (`--size 120x40`)
   writing into a sink that counts bytes. A thread (the reader's stand-in)
   feeds `--rate` messages a second into random rooms, a share of them into
   the current one, for `--duration` seconds; every redraw is timed between
   `before_render` and `after_render` (the client's own `follow_view` runs
   inside). Process CPU (all threads: the UI loop, the feeding thread's
   decode and `Chat`) is `time.process_time` over the run. Variants:
   `follow` (reading the newest), `scroll` (PageUp x20 then PageDown x20,
   one key every 0.25 s), `switch` (Ctrl+N, the next conversation, every
   0.5 s).
3. Before/after: `naive`, the same run as `follow` with the timeline window's
   control replaced by prompt_toolkit's stock `FormattedTextControl` given
   the current room's whole text every frame (each entry drawn once and
   cached as text; per frame: the text joined, parsed from ANSI and wrapped
   by the window), which is what `TimelineControl` replaces.

The table: per variant the messages a second fed, redraws, redraw wall time
(p50, p99, max), the UI thread's CPU time per redraw at p99, p99 of the
redraws during which no full (generation 2) garbage collection ran, how many
took over 16 ms, process CPU, bytes written to the terminal a second, full
collections and the longest. `--tree before=DIR` measures another tree's
`client` package (e.g. `git archive OLD client | tar -x -C DIR`) in turns,
all in child processes.

Goals (issue 17): redraw p99 <= 16 ms, client CPU < 25% of a core, memory for
the 50,000 lines <= 50 MB. Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chatd.protocol import parse_json_line

SEED = 17
ME = "me"
USERS = [f"user{n:02d}" for n in range(40)]
WORDING = (
    "the deploy is green now but the canary in eu-west still shows elevated latency "
    "please look at the dashboard before you merge anything else into main today "
    "lunch ok thanks ship it rollback tomorrow meeting notes incident ticket review"
)
WORDS = WORDING.split()
PAGE_KEYS = {"pageup": "\x1b[5~", "pagedown": "\x1b[6~", "next": "\x0e"}
VARIANTS = ("follow", "scroll", "switch", "naive")
GOAL_P99_MS = 16.0
GOAL_CPU = 25.0
GOAL_MEMORY_MB = 50.0
RESULTS = Path(__file__).parent / "results"


# -- the workload ----------------------------------------------------------------------


class Frames:
    """Server frames as the wire carries them (JSON lines): messages in `rooms` rooms.

    Texts are 20-200 characters, one in ten 300-700 (several lines at 97
    columns), one in fifty mentions the user; timestamps step so that the
    initial scrollback spans a few days (day lines appear).
    """

    def __init__(self, rooms: int, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.rooms = [f"room{n:02d}" for n in range(rooms)]
        self.next_id = 1

    def text(self) -> str:
        rng = self.rng
        length = rng.randint(300, 700) if rng.random() < 0.1 else rng.randint(20, 200)
        words: list[str] = []
        size = 0
        while size < length:
            word = rng.choice(WORDS)
            words.append(word)
            size += len(word) + 1
        return " ".join(words)[:length].rstrip()

    def frame(self, room: str, ts: datetime) -> bytes:
        mid = self.next_id
        self.next_id += 1
        text = self.text()
        frame: dict[str, Any] = {
            "event": "message",
            "id": mid,
            "room": room,
            "user": self.rng.choice(USERS),
            "text": text,
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if self.rng.random() < 0.02:
            frame["text"] = f"@{ME} {text}"
            frame["mentions"] = [ME]
        return json.dumps(frame, separators=(",", ":")).encode()

    def history(self, count: int, end: datetime) -> Iterator[bytes]:
        """`count` messages in random rooms, the newest at `end`, 6 s apart."""
        start = end - timedelta(seconds=6 * count)
        for n in range(count):
            yield self.frame(self.rng.choice(self.rooms), start + timedelta(seconds=6 * n))


class BenchSession:
    """What `Chat` needs of a session; requests are answered by the feeding thread."""

    username = ME
    waiting = 0

    def __init__(self, rooms: list[str]) -> None:
        from client.session import State

        self.state = State.CONNECTED
        self.rooms = rooms
        self.replies: list[tuple[Callable[[Any], None], dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.requests = 0

    def joined_rooms(self) -> list[str]:
        return list(self.rooms)

    def request(self, op: str, on_reply: Any = None, **args: Any) -> Any:
        self.requests += 1
        if op == "history" and on_reply is not None:
            before = args.get("before") or 1
            room, limit = args["room"], int(args.get("limit", 50))
            ts = datetime(2026, 1, 1, tzinfo=UTC)
            messages = [
                {
                    "id": mid,
                    "room": room,
                    "user": "old",
                    "text": f"older {mid}",
                    "ts": ts.isoformat(),
                }
                for mid in range(max(before - limit, 1), before)
            ]
            with self.lock:
                self.replies.append((on_reply, {"ok": True, "room": room, "messages": messages}))
        return type("Req", (), {"queued": False})()

    def answer(self) -> None:
        with self.lock:
            replies, self.replies = self.replies, []
        for on_reply, reply in replies:
            on_reply(reply)

    def close(self) -> None:
        pass


def make_client(rooms: list[str]) -> tuple[Any, Any, BenchSession]:
    """A Chat writing to a ScreenDisplay, as `chat login` makes them (marks, bell, colour)."""
    from client import render
    from client.chat import Chat
    from client.conversations import Notifier, ReadMarks
    from client.screen import ScreenDisplay

    session = BenchSession(rooms)
    display = ScreenDisplay()
    chat = Chat(
        session,  # type: ignore[arg-type]
        display,
        style=render.Style(colour=True),
        tz=UTC,
        notifier=Notifier(display.raw, {}),
        marks=ReadMarks(lambda conversation, mid: chat.mark_read(conversation, mid)),
    )
    chat.view(("room", rooms[0]))
    return chat, display, session


def timeline_size(columns: int, rows: int) -> tuple[int, int]:
    """The timeline's width and height on a wide terminal: the room list, the topic,
    status and input lines take the rest."""
    from client.screen import SIDEBAR_WIDTH

    return columns - SIDEBAR_WIDTH - 1, rows - 3


def feed(chat: Any, lines: Iterator[bytes]) -> int:
    count = 0
    for line in lines:
        chat.event(parse_json_line(line))
        count += 1
    return count


# -- 1. memory (a child process) -------------------------------------------------------


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_child(args: argparse.Namespace) -> dict[str, Any]:
    """Run in a fresh process: what the scrollback costs, with or without tracemalloc."""
    import client.screen  # imports paid before the baseline

    frames = Frames(args.rooms)
    chat, display, _ = make_client(frames.rooms)
    width, height = timeline_size(*args.size)
    traced = args.memory_child == "tracemalloc"
    end = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    gc.collect()
    if traced:
        tracemalloc.start(1)
    rss0 = rss_bytes()
    started = time.perf_counter()
    fed = feed(chat, frames.history(args.messages, end))
    fill_s = time.perf_counter() - started
    stages: dict[str, Any] = {}

    def stage(name: str) -> None:
        gc.collect()
        figures: dict[str, Any] = {"rss_delta": rss_bytes() - rss0}
        if traced:
            figures["traced"] = tracemalloc.get_traced_memory()[0]
            if name == "scrollback":
                snapshot = tracemalloc.take_snapshot()
                figures["by_file"] = [
                    (str(stat.traceback[0].filename).rsplit("/", 2)[-1], stat.size)
                    for stat in snapshot.statistics("filename")[:8]
                ]
        stages[name] = figures

    stage("scrollback")
    for room in frames.rooms:
        chat.view(("room", room))
        display.follow_view()
        display.visible(width, height)
    stage("pages drawn")
    with display._lock:
        for timeline in display.timelines.values():
            # the user pages back through all of it, as PageUp does
            while not timeline.scroll_up(height - 1, width, height):
                timeline.visible(width, height)
            timeline.follow()
    stage("every line drawn")
    entries = sum(len(t.entries) for t in display.timelines.values())
    rows = sum(len(e.lines(width)) for t in display.timelines.values() for e in t.entries)
    import client

    return {
        "client": client.__file__,
        "mode": args.memory_child,
        "messages": fed,
        "entries": entries,
        "rows_at_width": rows,
        "width": width,
        "fill_seconds": fill_s,
        "stages": stages,
    }


def run_memory(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.client_screen",
        "--memory-child",
        mode,
        "--messages",
        str(args.messages),
        "--rooms",
        str(args.rooms),
        "--size",
        f"{args.size[0]}x{args.size[1]}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- 2. and 3. redraws under load --------------------------------------------------------


class Sink:
    """The terminal: a text stream that counts what is written and keeps nothing."""

    encoding = "utf-8"

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: str) -> int:
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def naive_control(display: Any) -> Any:
    """prompt_toolkit's stock control given the current room's whole text every frame."""
    from prompt_toolkit.formatted_text import ANSI, to_formatted_text
    from prompt_toolkit.layout import FormattedTextControl

    from client.screen import STATUS

    texts: dict[int, str] = {}  # each entry drawn once, unwrapped: the window wraps

    def text() -> Any:
        with display._lock:
            timeline = display._timeline(display.current() or STATUS)
            parts = []
            for entry in timeline.entries:
                drawn = texts.get(id(entry))
                if drawn is None:
                    drawn = texts[id(entry)] = "\n".join(entry.draw(None))
                parts.append(drawn)
        fragments = to_formatted_text(ANSI("\n".join(parts)))
        return [*fragments, ("[SetCursorPosition]", "")]  # the window shows the bottom

    return FormattedTextControl(text, focusable=False)


class Run:
    """One variant: the Application on a pipe and a sized Vt100 output, load from a thread."""

    def __init__(
        self,
        variant: str,
        chat: Any,
        display: Any,
        session: BenchSession,
        frames: Frames,
        args: argparse.Namespace,
        duration: float,
    ) -> None:
        self.variant = variant
        self.chat, self.display, self.session, self.frames = chat, display, session, frames
        self.args = args
        self.duration = duration
        self.renders: list[float] = []  # wall seconds per redraw
        self.render_cpu: list[float] = []  # the UI thread's CPU seconds per redraw
        self.render_gc: list[bool] = []  # a full collection (any thread) ran during the redraw
        self.fed = 0
        self.late = 0.0  # how far behind schedule the feeder fell, at most
        self.keys = 0
        self.gc_pauses: list[tuple[int, float]] = []
        self._stop = threading.Event()

    def measure(self) -> dict[str, Any]:
        from prompt_toolkit.application import create_app_session
        from prompt_toolkit.data_structures import Size
        from prompt_toolkit.filters import to_filter
        from prompt_toolkit.input import create_pipe_input
        from prompt_toolkit.layout import Window
        from prompt_toolkit.output.color_depth import ColorDepth
        from prompt_toolkit.output.vt100 import Vt100_Output

        from client.screen import TimelineControl, build_application
        from client.settings import Settings

        columns, rows = self.args.size
        sink = Sink()
        output = Vt100_Output(
            sink,  # type: ignore[arg-type]
            lambda: Size(rows=rows, columns=columns),
            term="xterm-256color",
            default_color_depth=ColorDepth.DEPTH_8_BIT,
            enable_cpr=False,
        )
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=output):
            app = build_application(self.chat, self.display, Settings())
            if self.variant == "naive":
                for container in app.layout.walk():
                    if isinstance(container, Window) and isinstance(
                        container.content, TimelineControl
                    ):
                        container.content = naive_control(self.display)
                        container.wrap_lines = to_filter(True)
            started: list[float] = [0.0, 0.0, 0]

            def before(_: object) -> None:
                started[0], started[1] = time.perf_counter(), time.thread_time()
                started[2] = len(self.gc_pauses)

            def after(_: object) -> None:
                if started[0]:
                    self.renders.append(time.perf_counter() - started[0])
                    self.render_cpu.append(time.thread_time() - started[1])
                    full = any(gen == 2 for gen, _ in self.gc_pauses[int(started[2]) :])
                    self.render_gc.append(full)

            app.before_render -= self.display.follow_view
            app.before_render += before
            app.before_render += self.display.follow_view
            app.after_render += after
            threads = [
                threading.Thread(target=self._feed, name="feed", daemon=True),
                threading.Thread(target=self._keys, args=(app, pipe), name="keys", daemon=True),
            ]
            gc_started = [0.0]

            def on_gc(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    gc_started[0] = time.perf_counter()
                else:
                    self.gc_pauses.append((info["generation"], time.perf_counter() - gc_started[0]))

            cpu0 = wall0 = 0.0

            def pre_run() -> None:
                nonlocal cpu0, wall0
                cpu0, wall0 = time.process_time(), time.perf_counter()
                for thread in threads:
                    thread.start()

            gc.callbacks.append(on_gc)
            try:
                app.run(pre_run=pre_run, handle_sigint=False)
            finally:
                gc.callbacks.remove(on_gc)
                self._stop.set()
                for thread in threads:
                    thread.join(10)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
        return self._figures(cpu, wall, sink.written)

    def _feed(self) -> None:
        """The reader's stand-in: `rate` frames a second, decoded and handed to Chat."""
        rate, share = self.args.rate, self.args.current_share
        total = int(rate * self.duration)
        rng = random.Random(SEED + 1)
        t0 = time.perf_counter()
        for n in range(total):
            due = t0 + n / rate
            now = time.perf_counter()
            if due > now:
                if self._stop.wait(due - now):
                    return
            else:
                self.late = max(self.late, now - due)
            current = self.chat.viewing()
            if current is not None and rng.random() < share:
                room = current[1]
            else:
                room = rng.choice(self.frames.rooms)
            line = self.frames.frame(room, datetime.now(UTC))
            self.chat.event(parse_json_line(line))
            self.session.answer()
            self.fed += 1
            if time.perf_counter() - t0 > self.duration * 3:
                return  # hopelessly behind (the naive control): stop anyway

    def _keys(self, app: Any, pipe: Any) -> None:
        """The user: keys at a steady pace, then the application is told to exit."""
        t0 = time.perf_counter()
        step, presses = (
            (0.25, ["pageup"] * 20 + ["pagedown"] * 20)
            if self.variant == "scroll"
            else (0.5, ["next"])
        )
        n = 0
        while not self._stop.is_set() and time.perf_counter() - t0 < self.duration:
            self._stop.wait(step)
            if self.variant in ("scroll", "switch"):
                pipe.send_text(PAGE_KEYS[presses[n % len(presses)]])
                self.keys += 1
                n += 1
        # the feeder is bounded by count; give it the rest of its time, then stop
        deadline = time.perf_counter() + self.duration * 2
        while self.fed < int(self.args.rate * self.duration) and time.perf_counter() < deadline:
            time.sleep(0.05)
        loop = app.loop
        if loop is not None:
            loop.call_soon_threadsafe(lambda: app.exit(result=0))

    def _figures(self, cpu: float, wall: float, written: int) -> dict[str, Any]:
        renders = sorted(self.renders)
        no_gc = sorted(
            t for t, gc_ran in zip(self.renders, self.render_gc, strict=True) if not gc_ran
        )
        render_cpu = sorted(self.render_cpu)
        full = [pause for generation, pause in self.gc_pauses if generation == 2]
        return {
            "variant": self.variant,
            "seconds": wall,
            "messages": self.fed,
            "rate": self.fed / wall if wall else 0.0,
            "feeder_late_max_s": self.late,
            "keys": self.keys,
            "redraws": len(renders),
            "redraw_p50_ms": 1000 * percentile(renders, 50),
            "redraw_p99_ms": 1000 * percentile(renders, 99),
            "redraw_max_ms": 1000 * (renders[-1] if renders else 0.0),
            "redraw_cpu_p99_ms": 1000 * percentile(render_cpu, 99),
            "redraw_p99_no_gc2_ms": 1000 * percentile(no_gc, 99),
            "redraws_over_16ms": sum(1 for t in renders if t > GOAL_P99_MS / 1000),
            "cpu_percent": 100 * cpu / wall if wall else 0.0,
            "terminal_bytes_per_s": written / wall if wall else 0.0,
            "gc_collections": len(self.gc_pauses),
            "gc_full": len(full),
            "gc_full_max_ms": 1000 * max(full, default=0.0),
        }


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# -- the report --------------------------------------------------------------------------


def commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=Path(__file__).parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "client", "bench"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=Path(__file__).parent,
        )
    except OSError:
        return "?"
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def mb(value: float) -> str:
    return f"{value / 1e6:.1f} MB"


def report(result: dict[str, Any]) -> None:
    print(f"\nclient_screen at {result['when']} commit {result['commit']}: {result['command']}")
    for memory in result["memory"]:
        stages = memory["stages"]
        key = "traced" if memory["mode"] == "tracemalloc" else "rss_delta"
        label = "tracemalloc" if key == "traced" else "RSS delta"
        print(
            f"[{memory['tree']}] memory ({label}), {memory['messages']} messages: "
            + ", ".join(f"{name} {mb(figures[key])}" for name, figures in stages.items())
        )
        if memory["mode"] == "rss":
            rate = memory["messages"] / memory["fill_seconds"]
            print(f"  filling the scrollback: {memory['fill_seconds']:.1f} s ({rate:.0f} msg/s)")
        for name, size in stages["scrollback"].get("by_file", []):
            print(f"  {name:<28} {mb(size)}")
    header = (
        f"{'tree':<8} {'variant':<8} {'msg/s':>6} {'redraws':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'cpu p99':>7} {'p99 -gc':>7} {'>16ms':>5} {'CPU %':>6} {'KB/s out':>8} "
        f"{'gc2':>4} {'gc2 max':>7}"
    )
    print(header)
    for run in result["runs"]:
        print(
            f"{run['tree']:<8} {run['variant']:<8} {run['rate']:>6.0f} {run['redraws']:>7} "
            f"{run['redraw_p50_ms']:>7.2f} {run['redraw_p99_ms']:>7.2f} "
            f"{run['redraw_max_ms']:>7.1f} {run['redraw_cpu_p99_ms']:>7.2f} "
            f"{run['redraw_p99_no_gc2_ms']:>7.2f} {run['redraws_over_16ms']:>5} "
            f"{run['cpu_percent']:>6.1f} {run['terminal_bytes_per_s'] / 1000:>8.1f} "
            f"{run['gc_full']:>4} {run['gc_full_max_ms']:>7.1f}"
        )
    for label, profile in result.get("profiles", {}).items():
        print(f"\n[{label}] where the time goes (py-spy, % of busy samples, own time):")
        for row in profile["own"][:15]:
            print(f"  {row['percent']:>5.1f}%  {row['function']}")


def parse_size(text: str) -> tuple[int, int]:
    columns, _, rows = text.partition("x")
    return int(columns), int(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.client_screen",
        description="The full-screen client (issue 17): scrollback memory, redraw time, CPU.",
    )
    parser.add_argument("--messages", type=int, default=50_000, help="scrollback (50000)")
    parser.add_argument("--rooms", type=int, default=20, help="rooms (20)")
    parser.add_argument("--rate", type=float, default=200.0, help="messages a second (200)")
    parser.add_argument(
        "--current-share",
        type=float,
        default=0.1,
        help="share of the messages sent to the room on screen, besides its random share (0.1)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per variant (20)")
    parser.add_argument(
        "--naive-duration", type=float, default=10.0, help="seconds of the naive control (10)"
    )
    parser.add_argument("--size", type=parse_size, default=(120, 40), help="terminal (120x40)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"which redraw runs, in order (default {','.join(VARIANTS)})",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the redraw runs (1)")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=0,
        metavar="N",
        help="the collector's generation-0 threshold in the redraw runs (default: Python's)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="no memory children")
    parser.add_argument(
        "--profile", metavar="VARIANT", help="py-spy over this variant's runs (its summary)"
    )
    parser.add_argument(
        "--tree",
        type=parse_tree,
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also measure the client package of another source tree (e.g. an export of an "
        "older commit), in turns with this one",
    )
    parser.add_argument("--memory-child", choices=("tracemalloc", "rss"), help=argparse.SUPPRESS)
    parser.add_argument("--redraw-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in filter(None, args.variants.split(",")):
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}: one of {', '.join(VARIANTS)}")
    return args


def redraw_child(args: argparse.Namespace) -> dict[str, Any]:
    """Run in a fresh process: the scrollback, then each variant's redraws under load."""
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    frames = Frames(args.rooms)
    chat, display, session = make_client(frames.rooms)
    end = datetime.now(UTC) - timedelta(minutes=1)
    started = time.perf_counter()
    feed(chat, frames.history(args.messages, end))
    fill_s = time.perf_counter() - started
    runs: list[dict[str, Any]] = []
    profiles: list[Path] = []
    for variant in args.variants.split(","):
        chat.view(("room", frames.rooms[0]))
        with display._lock:
            for timeline in display.timelines.values():
                timeline.follow()
        duration = args.naive_duration if variant == "naive" else args.duration
        run = Run(variant, chat, display, session, frames, args, duration)
        spy = None
        if args.profile == variant:
            from bench.profile import PySpy

            RESULTS.mkdir(exist_ok=True)
            out = RESULTS / f"client-screen-{variant}-{os.getpid()}.raw"
            spy = PySpy(os.getpid(), out, rate=100, core="0,1", threads=True)
            spy.start()
            profiles.append(out)
        try:
            runs.append(run.measure())
        finally:
            if spy is not None:
                spy.stop()
    import client

    result: dict[str, Any] = {"fill_seconds": fill_s, "runs": runs, "client": client.__file__}
    if profiles:
        from bench.profile import summarise

        result["profile"] = summarise([path for path in profiles if path.exists()], top=25)
    return result


def child(args: argparse.Namespace, tree: Path, *flags: str) -> dict[str, Any]:
    """This script run by a fresh interpreter with `tree`'s client package (and chatd)."""
    command = [sys.executable, str(Path(__file__).resolve()), *flags]
    command += ["--messages", str(args.messages), "--rooms", str(args.rooms)]
    command += ["--size", f"{args.size[0]}x{args.size[1]}", "--rate", str(args.rate)]
    command += ["--current-share", str(args.current_share), "--variants", args.variants]
    command += ["--duration", str(args.duration), "--naive-duration", str(args.naive_duration)]
    if args.profile:
        command += ["--profile", args.profile]
    if args.gc_threshold:
        command += ["--gc-threshold", str(args.gc_threshold)]
    here = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(tree), str(here)]))}
    budget = 120 + 3 * len(VARIANTS) * max(args.duration, args.naive_duration) * 3
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=budget, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {flags} failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def parse_tree(text: str) -> tuple[str, Path]:
    label, _, path = text.rpartition("=")
    return label or Path(path).name, Path(path).resolve()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return 0
    if args.redraw_child:
        print(json.dumps(redraw_child(args)))
        return 0
    here = Path(__file__).resolve().parent.parent
    trees = [("this", here), *args.tree]
    result: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "command": " ".join(["python -m bench.client_screen", *(argv or sys.argv[1:])]),
        "args": {k: v for k, v in vars(args).items()},
        "trees": {label: str(path) for label, path in trees},
        "memory": [],
        "runs": [],
    }
    for round_ in range(args.rounds):
        # the trees take turns, the order reversed every other round (the machine drifts)
        order = trees if round_ % 2 == 0 else trees[::-1]
        for label, tree in order:
            if not args.skip_memory and round_ == 0:
                for mode in ("tracemalloc", "rss"):
                    memory = child(args, tree, "--memory-child", mode)
                    result["memory"].append({"tree": label, **memory})
                    print(f"{label}: memory ({mode}) done", file=sys.stderr)
            if args.variants:
                redraws = child(args, tree, "--redraw-child")
                for run in redraws["runs"]:
                    result["runs"].append({"tree": label, "round": round_, **run})
                if "profile" in redraws:
                    result.setdefault("profiles", {})[label] = redraws["profile"]
                print(f"{label}: redraws done (round {round_})", file=sys.stderr)
    report(result)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-client-screen.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
