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
import re
import statistics
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from bench.nodes import Backing

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
    "paced-500-split": [
        ("delivery latency p99 ms", _get("delivery_latency", "p99_ms"), ""),
        ("odd minus even receivers p99 ms", _get("cross_minus_same_p99_ms"), "~0 (one server)"),
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


# --nodes: the scenarios that make sense on several nodes, and their figures. The first
# column is N nodes, the second one node, so the ratio column is the issue's "N nodes
# against one"; for latencies the comparison is a difference (DIFFERENCES).
NODE_SCENARIOS = ("fanout-1x100", "fanout-10x20", "paced-500", "paced-500-split", "ingest-50")
NODE_DEFAULT_SCENARIOS = ("fanout-1x100", "fanout-10x20", "paced-500", "paced-500-split")
_BESIDE: list[Metric] = [
    ("chatd CPU-s (all nodes)", _get("server_cpu_s"), ""),
    ("Redis CPU-s", _get("cluster", "redis_cpu_s"), ""),
    ("PostgreSQL CPU-s", _get("cluster", "postgres_cpu_s"), ""),
    ("  writer thread (chatd-commit) CPU-s", _get("cluster", "threads_cpu_s", "commit"), ""),
    ("  bus-subscribe thread CPU-s", _get("cluster", "threads_cpu_s", "bus-subscribe"), ""),
    ("  bus-publish thread CPU-s", _get("cluster", "threads_cpu_s", "bus-publish"), ""),
    ("  the rest (connections) CPU-s", _get("cluster", "threads_cpu_s", "rest"), ""),
    ("bus frames published", _get("cluster", "bus", "frames_published"), ""),
    ("messages per batch frame", _get("cluster", "bus", "messages_per_batch_frame"), ""),
    ("us per frame: bus-publish thread", _get("cluster", "bus", "publish_us_per_frame"), ""),
    (
        "us per frame received: bus-subscribe (with fan-out)",
        _get("cluster", "bus", "subscribe_us_per_frame_received"),
        "",
    ),
    ("us per frame: Redis", _get("cluster", "bus", "redis_us_per_frame"), ""),
    ("other load on the machine (cores)", _get("cluster", "machine", "others_cores"), ""),
]
NODE_HEADLINES: dict[str, list[Metric]] = {
    "fanout-1x100": [
        ("deliveries / chatd CPU-s", _get("deliveries_per_cpu_s"), ">= 0.8 of 1 node"),
        ("deliveries / CPU-s with Redis+PG", _get("cluster", "deliveries_per_total_cpu_s"), ""),
        ("deliveries / s (wall)", _get("deliveries_per_s"), ""),
        *_BESIDE,
    ],
    "fanout-10x20": [
        ("deliveries / chatd CPU-s", _get("deliveries_per_cpu_s"), ">= 0.5 of 1 node"),
        ("deliveries / CPU-s with Redis+PG", _get("cluster", "deliveries_per_total_cpu_s"), ""),
        ("deliveries / s (wall)", _get("deliveries_per_s"), ""),
        *_BESIDE,
    ],
    "paced-500": [
        ("delivery latency p50 ms", _get("delivery_latency", "p50_ms"), ""),
        ("delivery latency p99 ms", _get("delivery_latency", "p99_ms"), "+ <= 5 ms over 1 node"),
        ("delivery latency p99.9 ms", _get("delivery_latency", "p999_ms"), ""),
        ("ack latency p99 ms", _get("ack_latency", "p99_ms"), ""),
        ("msgs/s fully delivered", _get("delivered_rate"), "500"),
        ("deliveries / chatd CPU-s", lambda r: _per_cpu(r, "delivered"), ""),
        *_BESIDE,
    ],
    "paced-500-split": [
        ("same-node latency p50 ms", _get("same_node_latency", "p50_ms"), ""),
        ("cross-node latency p50 ms", _get("cross_node_latency", "p50_ms"), ""),
        ("same-node latency p99 ms", _get("same_node_latency", "p99_ms"), ""),
        ("cross-node latency p99 ms", _get("cross_node_latency", "p99_ms"), ""),
        ("cross minus same p99 ms", _get("cross_minus_same_p99_ms"), "<= 5 (2 nodes)"),
        ("cross minus same p50 ms", _get("cross_minus_same_p50_ms"), ""),
        ("msgs/s fully delivered", _get("delivered_rate"), "500"),
        ("chatd CPU-s (all nodes)", _get("server_cpu_s"), ""),
        ("other load on the machine (cores)", _get("cluster", "machine", "others_cores"), ""),
    ],
    "ingest-50": [
        ("acknowledged msgs / chatd CPU-s", _get("acked_per_cpu_s"), ""),
        ("acknowledged msgs / s (wall)", _get("acked_per_s"), ""),
        *_BESIDE,
    ],
}
# figures compared as "first minus other" (milliseconds), not as a ratio
DIFFERENCES = {
    "same-node latency p50 ms",
    "cross-node latency p50 ms",
    "same-node latency p99 ms",
    "cross-node latency p99 ms",
    "cross minus same p99 ms",
    "cross minus same p50 ms",
    "delivery latency p50 ms",
    "delivery latency p99 ms",
    "delivery latency p99.9 ms",
    "ack latency p99 ms",
}


def _per_cpu(result: dict[str, Any], key: str) -> float | None:
    count, cpu = result.get(key), result.get("server_cpu_s")
    if not isinstance(count, int | float) or not isinstance(cpu, int | float) or not cpu:
        return None
    return round(count / cpu)


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

    def __init__(self, label: str, chatd: str | None = None, nodes: int = 0) -> None:
        self.label = label
        self.chatd = chatd  # None for an IRC server (the label names it)
        # --nodes: chatd on the private PostgreSQL, on this many nodes (0: on SQLite alone)
        self.nodes = nodes

    def on_nodes(self, count: int, prefix: bool) -> Contender:
        """This build on `count` nodes of the private PostgreSQL (and Redis, if several)."""
        name = f"{count} node{'s' if count > 1 else ''}"
        return Contender(f"{self.label}: {name}" if prefix else name, self.chatd, count)

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
    backing: Backing | None = None,
    spread: bool = False,
) -> dict[str, Any]:
    """Start a fresh server, run the scenario once against it, stop the server."""
    if server.nodes:
        assert backing is not None
        return _run_on_nodes(scenario, kwargs, server, backing, profile_to, gil_only, rate, spread)
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


def _run_on_nodes(
    scenario: Scenario,
    kwargs: dict[str, Any],
    server: Contender,
    backing: Backing,
    profile_to: Path | None,
    gil_only: bool,
    rate: int,
    spread: bool = False,
) -> dict[str, Any]:
    """Start `server.nodes` nodes on the emptied private database, run the scenario once
    across them, stop them; the result has what Redis, PostgreSQL and the bus cost."""
    from bench.nodes import NODE_NAMES, ClusterProbe, chatd_nodes

    use_chatd(server.chatd)
    spies: dict[str, tuple[PySpy, Path]] = {}
    try:
        with chatd_nodes(backing, server.nodes, scenario.server_flags, spread) as running:
            probe = ClusterProbe(backing, running.nodes)
            try:
                starts: list[Callable[[], None]] = [probe.start]
                stops: list[Callable[[], None]] = [probe.stop]
                if profile_to is not None:
                    for name, node in zip(NODE_NAMES, running.nodes, strict=False):
                        out = profile_to.with_name(f"{profile_to.stem}-{name}.txt")
                        spy = PySpy(node.pid, out, gil_only=gil_only, rate=rate, threads=True)
                        spies[name] = (spy, out)
                        starts.append(spy.start)
                        stops.append(spy.stop)
                hooks = Hooks(_each(starts), _each(stops))
                result = asyncio.run(scenario.func(_target(running), hooks, **kwargs))
                result["cluster"] = probe.result(result)
            finally:
                probe.close()
    finally:
        use_chatd(None)
    result["server"] = running.version
    if server.chatd is not None:
        result["chatd_executable"] = server.chatd
    profiles = {name: str(out) for name, (_spy, out) in spies.items() if out.exists()}
    if profiles:
        result["node_profiles"] = profiles
    return result


def _each(calls: list[Callable[[], None]]) -> Callable[[], None]:
    def run() -> None:
        for call in calls:
            call()

    return run


def _target(running: Running) -> Target:
    nodes = tuple((node.port, node.pid) for node in running.nodes)
    return Target(
        running.kind, running.port, running.pid, str(running.workdir), running.password, nodes
    )


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


def _difference(first: list[float | None], other: list[float | None]) -> str:
    """Difference of the medians, with the range of the per-round differences."""
    a, b = _median(first), _median(other)
    if a is None or b is None:
        return ""
    text = f"{a - b:+.3g}"
    pairs = [x - y for x, y in zip(first, other, strict=False) if x is not None and y is not None]
    if len(pairs) > 1:
        text += f" [{min(pairs):+.3g} to {max(pairs):+.3g}]"
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
    headlines = NODE_HEADLINES if report.get("nodes") else HEADLINES
    for name, runs in report["scenarios"].items():
        metrics = list(headlines.get(name, []))
        if any(r.get("gc") for rs in runs.values() for r in rs):
            metrics += GC_ROWS
        for label, read, goal in metrics:
            values = {server: [read(r) for r in runs.get(server, [])] for server in labels}
            cells = [_cell(values[server])[1] for server in labels]
            if first:
                compare = _difference if label in DIFFERENCES else _ratio
                cells += [compare(values[first], values[other]) for other in others]
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
    parser.add_argument(
        "--nodes",
        type=int,
        default=0,
        metavar="N",
        help="run on N chatd nodes sharing a private PostgreSQL and redis-server, taking "
        f"turns with one node on the same PostgreSQL ({', '.join(NODE_SCENARIOS)}; "
        f"default {', '.join(NODE_DEFAULT_SCENARIOS)})",
    )
    parser.add_argument(
        "--spread-nodes",
        action="store_true",
        help="with --nodes: node i on core i mod the cores, not all on core 0 (the second "
        "then shares core 1 with the generator, PostgreSQL and Redis)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args(argv)
    if args.nodes and not (args.all or args.scenario):
        args.scenario = list(NODE_DEFAULT_SCENARIOS)
    names = sorted(SCENARIOS) if args.all or not args.scenario else args.scenario
    names = [n for n in SCENARIOS if n in names]  # the table's order
    if args.nodes:
        if not 2 <= args.nodes <= 8:
            parser.error("--nodes must be 2-8")
        if args.compare or args.compare_ngircd or args.gc_stats:
            parser.error("--nodes goes with neither --compare nor --gc-stats")
        if args.all:
            names = [n for n in names if n in NODE_SCENARIOS]
        elif set(names) - set(NODE_SCENARIOS):
            parser.error(f"with --nodes, the scenarios are {', '.join(NODE_SCENARIOS)}")
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
    if args.nodes:
        # why: N nodes first, so the ratio column is N nodes over one
        prefix = len(builds) > 1
        builds = [b.on_nodes(count, prefix) for b in builds for count in (args.nodes, 1)]

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
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "argv": sys.argv[1:] if argv is None else argv,
        "chatd": {b.label: b.chatd or "beside this Python" for b in builds},
        "nodes": args.nodes,
        "scenarios": {},
    }
    with contextlib.ExitStack() as stack:
        backing = None
        if args.nodes:
            from bench.nodes import BACKING_CORE, Backing

            backing = stack.enter_context(Backing.running())
            report["machine"]["postgresql_and_redis"] = f"core {BACKING_CORE}"
            if args.spread_nodes:
                report["machine"]["server"] = "node i on core i mod the cores"
        _run_all(args, names, builds, irc, report, stamp, backing)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    out = args.out / f"{stamp}-{report['mode']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    _print_profiles(report)
    print(f"\nwrote {out}")
    everything_correct = all(
        r.get("correct")
        for runs in report["scenarios"].values()
        for rs in runs.values()
        for r in rs
    )
    return 0 if everything_correct else 1


def _run_all(
    args: argparse.Namespace,
    names: list[str],
    builds: list[Contender],
    irc: list[str],
    report: dict[str, Any],
    stamp: str,
    backing: Backing | None,
) -> None:
    """Every scenario, every server in turns, `--repeat` rounds; results into `report`."""
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
                    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", server.label)
                    profile_to = args.out / f"{stamp}-{name}-{tag}-{attempt}.pyspy.txt"
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
                        backing,
                        args.spread_nodes,
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


def _print_profiles(report: dict[str, Any]) -> None:
    """Each scenario's and server's profiles summed over its runs: the server's, or each
    node's with its threads."""
    for name, runs in report["scenarios"].items():
        for label, results in runs.items():
            raws = [
                Path(r["profile"]["raw"])
                for r in results
                if r.get("profile") and Path(r["profile"]["raw"]).exists()
            ]
            if raws:
                _print_profile(f"{name} on {label}", raws)
            nodes = sorted({node for r in results for node in r.get("node_profiles", {})})
            for node in nodes:
                paths = [
                    Path(r["node_profiles"][node])
                    for r in results
                    if node in r.get("node_profiles", {})
                ]
                _print_profile(f"{name} on {label}, node {node}", [p for p in paths if p.exists()])


def _print_profile(title: str, raws: list[Path]) -> None:
    if not raws:
        return
    merged = summarise(raws)
    print(f"\nprofile of {title} ({merged['samples']} samples in {len(raws)} run(s)), own time:")
    for row in merged["own"][:15]:
        print(f"  {row['percent']:5.1f}%  {row['function']}")
    print("inclusive:")
    for row in merged["inclusive"][:15]:
        print(f"  {row['percent']:5.1f}%  {row['function']}")
    for thread in merged["threads"][:6]:
        print(f"thread {thread['thread']}: {thread['percent']:.1f}% of the samples; own time:")
        for row in thread["own"][:6]:
            print(f"    {row['percent']:5.1f}%  {row['function']}")


if __name__ == "__main__":
    sys.exit(main())
