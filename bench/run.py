"""The benchmark runner: fresh pinned servers, the selected scenarios, a table and a JSON file.

    python -m bench.run --quick --all                 # every scenario, small counts
    python -m bench.run --scenario fanout-1x100       # one scenario, full size
    python -m bench.run --compare ngircd,inspircd --scenario fanout-1x100 --scenario fanout-10x20
    python -m bench.run --chatd before=../wt-before/.venv/bin/chatd --chatd .venv/bin/chatd
    python -m bench.run --profile --scenario fanout-1x100
    python -m bench.run --gc-stats --scale 5 --scenario fanout-10x20   # the collector's share

Each scenario run gets its own server (chatd on a new SQLite file, so one
scenario's rows or connections never tilt the next), pinned to core 0 with
taskset; this process, the load generator, pins itself to core 1. The machine
is shared and its speed drifts, so the servers of a scenario take turns
(`--repeat N` rounds, each running every server once, the order reversed every
other round) and the table shows the median and range of each, and the ratio of
the first chatd to each other server with the range of the per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.gcprobe import GcProbe
from bench.loadgen import PASSWORD, SCENARIOS, Hooks, Scenario, Target, fanout_names, raise_nofile
from bench.profile import SAMPLE_RATE, PySpy, summarise
from bench.servers import (
    CHATD_IRC,
    IRC_SERVERS,
    Running,
    chatd_executable,
    chatd_irc_server,
    chatd_server,
    use_chatd,
)

GENERATOR_CORE = 1
RESULTS = Path(__file__).resolve().parent / "results"
Metric = tuple[str, Callable[[dict[str, Any]], float | None], str]


def _get(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def read(result: dict[str, Any]) -> float | None:
        value: Any = result
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value if isinstance(value, int | float) else None

    return read


# scenario -> the figures the issue asks for: (label, how to read it, goal)
HEADLINES: dict[str, list[Metric]] = {
    "fanout-1x100": [
        ("deliveries / server CPU-s", _get("deliveries_per_cpu_s"), ">= 1.0 of InspIRCd"),
        ("deliveries / s (wall)", _get("deliveries_per_s"), ""),
    ],
    "fanout-10x20": [
        (
            "deliveries / server CPU-s",
            _get("deliveries_per_cpu_s"),
            ">= 1.0 of ngIRCd (stretch: InspIRCd)",
        ),
        ("deliveries / s (wall)", _get("deliveries_per_s"), ""),
    ],
    "paced-500": [
        ("delivery latency p50 ms", _get("delivery_latency", "p50_ms"), ""),
        ("delivery latency p99 ms", _get("delivery_latency", "p99_ms"), "<= 12"),
        ("msgs/s fully delivered", _get("delivered_rate"), "500"),
    ],
    "idle-rss": [("RSS per idle client KiB", _get("rss_per_client_kib"), "<= 24 (10k clients)")],
    "join-history": [
        ("first join p50 ms", _get("first_join", "p50_ms"), ""),
        ("first join p99 ms", _get("first_join", "p99_ms"), "<= fdatasync p99 + 0.5"),
        ("fdatasync p50 ms (same dir)", _get("fdatasync", "p50_ms"), ""),
        ("fdatasync p99 ms (same dir)", _get("fdatasync", "p99_ms"), ""),
        ("first join p99 - fdatasync p99", _get("first_join_p99_over_fdatasync_p99_ms"), "<= 0.5"),
        ("re-join p99 ms", _get("rejoin", "p99_ms"), ""),
    ],
    "ingest-50": [
        ("acknowledged msgs / server CPU-s", _get("acked_per_cpu_s"), "+50% over f9f8ab1"),
        ("acknowledged msgs / s (wall)", _get("acked_per_s"), ""),
    ],
    "transfer": [
        ("chat p99 ms during the upload", _get("chat_latency_during", "p99_ms"), "close to calm"),
        ("chat p99 ms before it", _get("chat_latency_calm", "p99_ms"), ""),
        ("upload MB/s", _get("transfer_mb_per_s"), ""),
    ],
    "login-storm": [
        ("chat p99 ms during logins", _get("chat_latency_during", "p99_ms"), "<= 20"),
        ("chat p99 ms before logins", _get("chat_latency_calm", "p99_ms"), ""),
        ("storm duration s", _get("disturbance_s"), ""),
    ],
}


# shown when a run has --gc-stats figures: the collector over the measured part
GC_ROWS: list[Metric] = [
    ("collector share of server CPU", _get("gc", "share_of_server_cpu"), ""),
    ("collector seconds", _get("gc", "total_s"), ""),
]


def pin_generator() -> str:
    """Pin this process to core 1 (the server gets core 0); says what it did."""
    if (os.cpu_count() or 1) < 2:
        return "not pinned (one core)"
    os.sched_setaffinity(0, {GENERATOR_CORE})
    return f"core {GENERATOR_CORE}"


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except OSError:
        return "unknown"


class Contender:
    """One server of a side-by-side run: a chatd build (its executable) or an IRC server."""

    def __init__(self, label: str, chatd: str | None = None) -> None:
        self.label = label
        self.chatd = chatd  # None for an IRC server (the label names it)

    @property
    def is_chatd(self) -> bool:
        return self.label not in IRC_SERVERS

    @property
    def runs_chatd(self) -> bool:
        """chatd runs (a build, or chatd through its IRC listener): it can be profiled."""
        return self.is_chatd or self.label == CHATD_IRC


def parse_chatd(spec: str) -> Contender:
    """`LABEL=PATH` or `PATH` (labelled by its worktree's directory name) to a chatd build."""
    label, sep, path = spec.partition("=")
    if not sep:
        path = spec
        parents = Path(spec).resolve().parents
        # why: a venv's chatd is WORKTREE/.venv/bin/chatd; the worktree's name tells builds apart
        label = (parents[2].name if len(parents) > 2 else "") or spec
    if label in IRC_SERVERS:
        raise argparse.ArgumentTypeError(f"label {label!r} is taken by an IRC server")
    if not os.access(path, os.X_OK):
        raise argparse.ArgumentTypeError(f"{path} is not an executable")
    return Contender(label, str(Path(path).resolve()))


def parse_compare(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in IRC_SERVERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown IRC server {', '.join(unknown)} (known: {', '.join(IRC_SERVERS)})"
        )
    return names


def run_one(
    scenario: Scenario,
    kwargs: dict[str, Any],
    server: Contender,
    profile_to: Path | None,
    gil_only: bool = False,
    rate: int = SAMPLE_RATE,
    gc_stats: bool = False,
) -> dict[str, Any]:
    """Start a fresh server, run the scenario once against it, stop the server."""
    with contextlib.ExitStack() as stack:
        probe = None
        if server.label == CHATD_IRC:
            use_chatd(None)
            names = fanout_names(kwargs["rooms"], kwargs["members"])
            context = chatd_irc_server([name for room in names for name in room], PASSWORD)
        elif not server.is_chatd:
            start = IRC_SERVERS[server.label]
            assert start is not None
            context = start()
        else:
            use_chatd(None)
            chatd = server.chatd or chatd_executable()
            if gc_stats:
                probe_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gc-")))
                probe = GcProbe(chatd, probe_dir)
                chatd = str(probe.wrapper)
            use_chatd(chatd)
            seed = scenario.seed_users(kwargs) if scenario.seed_users else None
            context = chatd_server(scenario.server_flags, seed, PASSWORD, scenario.seed_cost)
        with context as running:
            starts: list[Callable[[], None]] = []
            stops: list[Callable[[], None]] = []
            spy = None
            if probe is not None:
                starts.append(probe.start)
                stops.append(probe.stop)
            if profile_to is not None:
                spy = PySpy(running.pid, profile_to, gil_only=gil_only, rate=rate)
                starts.append(spy.start)
                stops.append(spy.stop)
            hooks = Hooks(_each(starts), _each(stops))
            result = asyncio.run(scenario.func(_target(running), hooks, **kwargs))
            if probe is not None:
                result["gc"] = probe.result(result.get("server_cpu_s"))
        use_chatd(None)
    result["server"] = running.version
    if server.chatd is not None:
        result["chatd_executable"] = server.chatd
    if spy is not None and profile_to is not None and profile_to.exists():
        result["profile"] = {"raw": str(profile_to), **summarise(profile_to)}
    return result


def _each(calls: list[Callable[[], None]]) -> Callable[[], None]:
    def run() -> None:
        for call in calls:
            call()

    return run


def _target(running: Running) -> Target:
    return Target(running.kind, running.port, running.pid, str(running.workdir), running.password)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


IRC_NAMES = {"ngircd": "ngIRCd", "inspircd": "InspIRCd", CHATD_IRC: "chatd IRC"}


def _cell(values: list[float | None]) -> tuple[float | None, str]:
    """The median, and its text with the range in brackets when there are several."""
    median = _median(values)
    text = _fmt(median)
    present = [v for v in values if v is not None]
    if len(present) > 1:
        text += f" [{_fmt(min(present))}-{_fmt(max(present))}]"
    return median, text if values else ""


def _ratio(first: list[float | None], other: list[float | None]) -> str:
    """Ratio of the medians, with the range of the per-round ratios (runs taken in turn)."""
    a, b = _median(first), _median(other)
    if a is None or not b:
        return ""
    text = f"{a / b:.3f}"
    pairs = [x / y for x, y in zip(first, other, strict=False) if x is not None and y]
    if len(pairs) > 1:
        text += f" [{min(pairs):.2f}-{max(pairs):.2f}]"
    return text


def table(report: dict[str, Any]) -> str:
    """Median per figure over the repeats (range in brackets) for every server measured,
    and the first chatd's ratio to each of the others."""
    labels: list[str] = []
    for runs in report["scenarios"].values():
        labels.extend(label for label in runs if label not in labels)
    chatds = [label for label in labels if label not in IRC_SERVERS]
    first = chatds[0] if chatds else None
    others = [label for label in labels if label != first]
    header = [IRC_NAMES.get(label, label) for label in labels]
    header += [f"{first}/{IRC_NAMES.get(label, label)}" for label in others if first]
    rows = [("scenario", "figure", *header, "goal", "correct")]
    for name, runs in report["scenarios"].items():
        metrics = list(HEADLINES.get(name, []))
        if any(r.get("gc") for rs in runs.values() for r in rs):
            metrics += GC_ROWS
        for label, read, goal in metrics:
            values = {server: [read(r) for r in runs.get(server, [])] for server in labels}
            cells = [_cell(values[server])[1] for server in labels]
            if first:
                cells += [_ratio(values[first], values[other]) for other in others]
            correct = all(r.get("correct") for rs in runs.values() for r in rs)
            rows.append((name, label, *cells, goal, "yes" if correct else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), default=[])
    parser.add_argument("--all", action="store_true", help="every scenario")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument(
        "--compare",
        type=parse_compare,
        default=[],
        metavar="SERVER[,SERVER]",
        help=f"also run the IRC-capable scenarios (fan-out) against these IRC servers, "
        f"taking turns with chatd ({', '.join(IRC_SERVERS)})",
    )
    parser.add_argument(
        "--compare-ngircd", action="store_true", help="the same as --compare ngircd"
    )
    parser.add_argument(
        "--chatd",
        type=parse_chatd,
        action="append",
        default=[],
        metavar="[LABEL=]PATH",
        help="a chatd executable to measure (repeatable: builds take turns; the first is "
        "the one the ratios are of). Default: the chatd beside this Python, labelled chatd",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario (noise check)")
    parser.add_argument("--idle-clients", type=int, help="clients for idle-rss")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the chatd server over each scenario's measured part",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="as --profile, sampling only the thread that holds the GIL: where Python's CPU "
        "goes, without the threads waiting for it",
    )
    parser.add_argument(
        "--profile-rate",
        type=int,
        default=SAMPLE_RATE,
        help=f"py-spy samples per second (default {SAMPLE_RATE}; a fan-out run lasts under a "
        "second, so 1000 there)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="multiply the message counts of the fan-out and ingest scenarios: a full fan-out "
        "run is 0.1-0.3 s of server CPU, where one full garbage collection is 10-20%%",
    )
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="start chatd through a wrapper that times Python's garbage collector over the "
        "measured part (bench/gcprobe.py); adds rows to the table",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args(argv)
    names = sorted(SCENARIOS) if args.all or not args.scenario else args.scenario
    names = [n for n in SCENARIOS if n in names]  # the table's order
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat must be 1-10")
    if not 1 <= args.scale <= 50:
        parser.error("--scale must be 1-50")
    builds: list[Contender] = args.chatd or [Contender("chatd")]
    if len({b.label for b in builds}) < len(builds):
        parser.error("each --chatd needs its own label (LABEL=PATH)")
    irc = list(args.compare)
    if args.compare_ngircd and "ngircd" not in irc:
        irc.append("ngircd")

    # why: servers inherit this limit, and idle-rss needs one descriptor per client on each side
    raise_nofile(max(20000, args.idle_clients or 0))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    report: dict[str, Any] = {
        "date": stamp,
        "commit": git_commit(),
        "mode": "quick" if args.quick else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "generator": pin_generator(),
            "server": "taskset -c 0",
        },
        "argv": sys.argv[1:] if argv is None else argv,
        "chatd": {b.label: b.chatd or "beside this Python" for b in builds},
        "scenarios": {},
    }
    for name in names:
        scenario = SCENARIOS[name]
        kwargs = dict(scenario.quick if args.quick else scenario.full)
        if args.scale != 1 and "messages" in kwargs:
            kwargs["messages"] *= args.scale
        if name == "idle-rss" and args.idle_clients:
            kwargs["clients"] = args.idle_clients
        servers = builds + ([Contender(n) for n in irc] if scenario.irc else [])
        runs: dict[str, list[dict[str, Any]]] = {}
        for attempt in range(args.repeat):
            # why: taking turns, and reversing the order every other round, spreads the
            # host's drift (and any warm-up) evenly over the servers compared.
            for server in servers if attempt % 2 == 0 else servers[::-1]:
                profile_to = None
                if (args.profile or args.profile_gil) and server.runs_chatd:
                    profile_to = args.out / f"{stamp}-{name}-{server.label}-{attempt}.pyspy.txt"
                print(
                    f"bench: {name} on {server.label} ({attempt + 1}/{args.repeat}) ...",
                    file=sys.stderr,
                    flush=True,
                )
                try:
                    result = run_one(
                        scenario,
                        kwargs,
                        server,
                        profile_to,
                        args.profile_gil,
                        args.profile_rate,
                        args.gc_stats,
                    )
                except Exception as exc:  # a failed run is reported, and the others still run
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    result = {
                        "correct": False,
                        "error": f"{type(exc).__name__}: {exc} (at {where.name}:{where.lineno})",
                    }
                result["params"] = kwargs
                result["round"] = attempt
                runs.setdefault(server.label, []).append(result)
                print(
                    f"bench: {name} on {server.label}: correct={result.get('correct')} "
                    f"{result.get('error', '')}",
                    file=sys.stderr,
                    flush=True,
                )
        report["scenarios"][name] = runs

    out = args.out / f"{stamp}-{report['mode']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    for name, runs in report["scenarios"].items():
        for label, results in runs.items():
            raws = [
                Path(r["profile"]["raw"])
                for r in results
                if r.get("profile") and Path(r["profile"]["raw"]).exists()
            ]
            if not raws:
                continue
            merged = summarise(raws)
            print(
                f"\nprofile of {name} on {label} ({merged['samples']} samples in "
                f"{len(raws)} run(s)), own time:"
            )
            for row in merged["own"][:15]:
                print(f"  {row['percent']:5.1f}%  {row['function']}")
            print("inclusive:")
            for row in merged["inclusive"][:15]:
                print(f"  {row['percent']:5.1f}%  {row['function']}")
    print(f"\nwrote {out}")
    everything_correct = all(
        r.get("correct")
        for runs in report["scenarios"].values()
        for rs in runs.values()
        for r in rs
    )
    return 0 if everything_correct else 1


if __name__ == "__main__":
    sys.exit(main())
