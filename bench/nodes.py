"""Several chatd nodes for `bench.run --nodes N`: a private PostgreSQL and redis-server, and
what a cluster run costs beside the nodes.

`Backing` starts the run's own PostgreSQL and redis-server with the test
suite's helpers (tests/postgres.py: `initdb` into a temporary directory, a
free port of 127.0.0.1, `runuser` when root; tests/redis_server.py: a free
port, `--save ''`), never the machine's services, and stops and deletes
them at the end. They are imported as `tests.postgres` and
`tests.redis_server`: `tests/` has no `__init__.py`, so from the repository
root (where `python -m bench.run` runs, and which is how `bench` itself is
found) it is a namespace package, and those two modules import nothing from
the rest of the suite. Both are pinned to the generator's core, so the
nodes have core 0 to themselves as a single server has.

`chatd_nodes` starts N nodes on a freshly emptied database (one without
`--bus` when N is 1: the single server a team has before it needs a
cluster), each pinned to core 0, and stops them. `ClusterProbe` reads,
over exactly the measured part: PostgreSQL's CPU (the postmaster and all
its children), redis-server's, each node's named threads (the writer
`chatd-commit`, `chatd-bus-publish`, `chatd-bus-subscribe`, `chatd-repair`;
their ids come from `py-spy dump` once, at start), the frames Redis was
asked to publish (`INFO commandstats`) and the whole machine's busy time
(`/proc/stat`), from which the load of everything else on it follows.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.procstat import TreeMeter, children, own_cpu_seconds, tasks_of, thread_cpu_ns
from bench.profile import py_spy
from bench.servers import (
    Running,
    _pinned,
    _stop,
    _wait_listening,
    chatd_executable,
    chatd_fairness_flags,
)
from tests.postgres import PostgresCluster, find_binaries, unavailable_reason
from tests.redis_server import MISSING_SERVER, RedisServer, find_server

BACKING_CORE = 1  # why: the nodes get core 0, as a single server does; the generator is on 1
NODE_NAMES = "abcdefgh"
# why: these threads are the bus's and the writer's; everything else (connections, their
# send queues, housekeeping) is counted together as the rest.
NAMED_THREADS = {
    "chatd-commit": "commit",
    "chatd-bus-publish": "bus-publish",
    "chatd-bus-subscribe": "bus-subscribe",
    "chatd-repair": "repair",
}
THREAD_KINDS = (*NAMED_THREADS.values(), "rest")
# why: every node publishes one heartbeat a second besides its batches (chatd/redisbus.py)
HEARTBEATS_PER_NODE_S = 1.0
PY_SPY_TIMEOUT = 30.0


def unavailable() -> str | None:
    """Why a cluster run cannot happen here, or None when it can."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    if find_server() is None:
        return MISSING_SERVER
    return None


def _pin(pids: list[int], core: int) -> None:
    """Every thread of these processes to `core`; processes they fork later inherit it."""
    if (os.cpu_count() or 1) < 2:
        return
    for pid in pids:
        for tid in tasks_of(pid):
            with contextlib.suppress(OSError):  # a thread that just ended
                os.sched_setaffinity(tid, {core})


@dataclass
class Backing:
    """The run's private PostgreSQL and redis-server."""

    postgres: PostgresCluster
    redis: RedisServer
    postmaster_pid: int = 0
    redis_pid: int = 0

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[Backing]:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(f"--nodes needs a private PostgreSQL and Redis: {reason}")
        binaries = find_binaries()
        server = find_server()
        assert binaries is not None and server is not None
        with contextlib.ExitStack() as stack:
            postgres = PostgresCluster.start(binaries)
            stack.callback(postgres.stop)
            redis_server = RedisServer.start(server)
            stack.callback(redis_server.stop)
            backing = cls(postgres, redis_server)
            pid_file = postgres.data / "postmaster.pid"
            backing.postmaster_pid = int(pid_file.read_text().split()[0])
            with redis_server.client() as client:
                backing.redis_pid = int(client.info("server")["process_id"])
            backing.pin()
            yield backing

    def pin(self) -> None:
        """PostgreSQL (its postmaster and every process it has, or forks later) and Redis
        to BACKING_CORE."""
        _pin([self.postmaster_pid, *children(self.postmaster_pid), self.redis_pid], BACKING_CORE)

    def fresh_database(self) -> str:
        """The database emptied (the schema at its newest, no row) and Redis without a key."""
        self.redis.reset()
        url = self.postgres.empty_database(0)
        self.pin()  # why: a backend forked before the pin (the first migration's) is gone now
        return url


@contextlib.contextmanager
def chatd_nodes(
    backing: Backing,
    count: int,
    extra_flags: list[str] | tuple[str, ...] = (),
    spread: bool = False,
) -> Iterator[Running]:
    """`count` chatd nodes on a freshly emptied database, pinned to core 0; stopped on exit.

    One node runs without `--bus` (a single server on PostgreSQL); several share
    the private Redis as their bus. The Running returned is the first node's,
    with every node (the first included) in its `nodes`. `spread`: node i on core
    i mod the cores instead (an experiment: the second node then shares a core
    with the generator, PostgreSQL and Redis).
    """
    url = backing.fresh_database()
    with tempfile.TemporaryDirectory(prefix="chatd-nodes-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        executable = chatd_executable()
        version = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        fairness = chatd_fairness_flags()
        nodes: list[Running] = []
        for index in range(count):
            name = NODE_NAMES[index]
            cluster = ["--bus", backing.redis.url, "--node", name] if count > 1 else []
            command = [
                executable,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--db",
                url,
                *cluster,
                "--files-dir",
                str(workdir / f"files-{name}"),
                "--bcrypt-rounds",
                "4",
                "--log-level",
                "info",
                *fairness,
                *extra_flags,
            ]
            log = workdir / f"node-{name}.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith("CHATD_")}
            env["XDG_DATA_HOME"] = str(workdir / f"data-{name}")
            with log.open("wb") as log_file:
                process = subprocess.Popen(
                    _pinned(command, str(index % (os.cpu_count() or 1)) if spread else "0"),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                )
            stack.callback(_stop, process)
            _host, port = _wait_listening(process, log)
            nodes.append(Running("chatd", port, process.pid, workdir, version))
        backing.pin()  # why: each node's pool forked new backends
        first = nodes[0]
        label = f"{version} ({count} node{'s' if count > 1 else ''} on PostgreSQL)"
        yield Running(first.kind, first.port, first.pid, workdir, label, nodes=tuple(nodes))


def named_threads(pid: int) -> dict[str, list[int]]:
    """Thread ids of a chatd process by kind (NAMED_THREADS), read once with `py-spy dump`.

    CPython 3.11 gives its threads no name the kernel knows, so /proc only has ids;
    py-spy reads each one's Python name. Empty when py-spy is not installed.
    """
    binary = py_spy()
    if binary is None:
        return {}
    done = subprocess.run(
        [binary, "dump", "--json", "--pid", str(pid)],
        capture_output=True,
        text=True,
        timeout=PY_SPY_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        print(f"bench: py-spy dump of {pid} failed: {done.stderr[-300:]}", file=sys.stderr)
        return {}
    kinds: dict[str, list[int]] = {}
    for thread in json.loads(done.stdout):
        kind = NAMED_THREADS.get(str(thread.get("thread_name")))
        tid = thread.get("os_thread_id")
        if kind is not None and isinstance(tid, int):
            kinds.setdefault(kind, []).append(tid)
    return kinds


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy so far (all of /proc/stat's
    `cpu` line but idle and iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(value) for value in fields]
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # user..steal, less idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass
class ClusterProbe:
    """Hooks for the measured part of a run on `chatd_nodes`: what it cost beside the nodes."""

    backing: Backing
    nodes: tuple[Running, ...]
    _threads: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    _client: redis.Redis | None = None
    _redis: TreeMeter | None = None
    _postgres: TreeMeter | None = None
    _start_ns: dict[int, dict[int, int]] = field(default_factory=dict)
    _thread_s: dict[str, float] = field(default_factory=dict)
    _stats: dict[str, float] = field(default_factory=dict)
    _busy = 0.0
    _generator = 0.0
    _started = 0.0
    _wall = 0.0

    def __post_init__(self) -> None:
        self._threads = {node.pid: named_threads(node.pid) for node in self.nodes}
        self._client = self.backing.redis.client()
        self._redis = TreeMeter(self.backing.redis_pid)
        self._postgres = TreeMeter(self.backing.postmaster_pid)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _bus_stats(self) -> dict[str, float]:
        assert self._client is not None
        commands: dict[str, Any] = self._client.info("commandstats")
        stats: dict[str, Any] = self._client.info("stats")
        publish = commands.get("cmdstat_publish", {})
        transactions = commands.get("cmdstat_exec", {})
        return {
            "publish_calls": float(publish.get("calls", 0)),
            "publish_usec": float(publish.get("usec", 0)),
            "exec_calls": float(transactions.get("calls", 0)),
            "net_input_bytes": float(stats.get("total_net_input_bytes", 0)),
            "net_output_bytes": float(stats.get("total_net_output_bytes", 0)),
        }

    def start(self) -> None:
        assert self._redis is not None and self._postgres is not None
        self._stats = self._bus_stats()
        self._start_ns = {node.pid: thread_cpu_ns(node.pid) for node in self.nodes}
        self._redis.start()
        self._postgres.start()
        self._busy = _machine_busy_seconds()
        self._generator = own_cpu_seconds()
        self._started = time.perf_counter()

    def stop(self) -> None:
        assert self._redis is not None and self._postgres is not None
        self._wall = time.perf_counter() - self._started
        self._busy = _machine_busy_seconds() - self._busy
        self._generator = own_cpu_seconds() - self._generator
        self._postgres.stop()
        self._redis.stop()
        stop_ns = {node.pid: thread_cpu_ns(node.pid) for node in self.nodes}
        after = self._bus_stats()
        self._stats = {key: after[key] - self._stats.get(key, 0.0) for key in after}
        self._thread_s = dict.fromkeys(NAMED_THREADS.values(), 0.0)
        for pid, kinds in self._threads.items():
            for kind, tids in kinds.items():
                self._thread_s[kind] += (
                    sum(stop_ns[pid].get(tid, 0) - self._start_ns[pid].get(tid, 0) for tid in tids)
                    / 1e9
                )

    def result(self, run: dict[str, Any]) -> dict[str, Any]:
        """The figures beside the nodes, and the bus's per frame, for a scenario's result."""
        assert self._redis is not None and self._postgres is not None
        chatd = float(run.get("server_cpu_s") or 0.0)
        redis_s = self._redis.seconds
        postgres_s = self._postgres.seconds
        delivered = int(run.get("delivered") or 0)
        nodes = len(self.nodes)
        threads: dict[str, float] | None = None
        if any(self._threads.values()):
            threads = {kind: round(seconds, 4) for kind, seconds in self._thread_s.items()}
            threads["rest"] = round(max(0.0, chatd - sum(self._thread_s.values())), 4)
        frames = self._stats.get("publish_calls", 0.0)
        heartbeats = HEARTBEATS_PER_NODE_S * self._wall * nodes if nodes > 1 else 0.0
        batches = max(0.0, frames - heartbeats)
        messages = int(run.get("messages_sent") or 0)
        total = chatd + redis_s + postgres_s

        def per_frame(seconds: float, count: float) -> float | None:
            return round(seconds / count * 1e6, 2) if count and threads is not None else None

        others = self._busy - chatd - redis_s - postgres_s - self._generator
        return {
            "nodes": nodes,
            "node_cpu_s": run.get("node_cpu_s"),
            "redis_cpu_s": round(redis_s, 4),
            "postgres_cpu_s": round(postgres_s, 4),
            "postgres_processes": self._postgres.processes,
            "deliveries_per_total_cpu_s": round(delivered / total) if total else None,
            "threads_cpu_s": threads,
            "bus": {
                "frames_published": int(frames),
                "heartbeats_estimated": round(heartbeats, 1),
                "messages_per_batch_frame": round(messages / batches, 2) if batches else None,
                "redis_publish_rounds": int(self._stats.get("exec_calls", 0.0)),
                "redis_bytes_in": int(self._stats.get("net_input_bytes", 0.0)),
                "redis_bytes_out": int(self._stats.get("net_output_bytes", 0.0)),
                "redis_publish_usec": int(self._stats.get("publish_usec", 0.0)),
                # per frame, microseconds of CPU: the publishing thread (encoding and the
                # pipeline round trip), the subscribing thread (reading, decoding, and the
                # fan-out of the other nodes' batches: each node receives every frame), Redis
                "publish_us_per_frame": per_frame(self._thread_s.get("bus-publish", 0.0), frames),
                "subscribe_us_per_frame_received": per_frame(
                    self._thread_s.get("bus-subscribe", 0.0), frames * nodes
                ),
                "redis_us_per_frame": round(redis_s / frames * 1e6, 2) if frames else None,
            }
            if nodes > 1
            else None,
            "machine": {
                "busy_cpu_s": round(self._busy, 3),
                # everything on the machine but the nodes, PostgreSQL, Redis and the generator
                "others_cpu_s": round(max(0.0, others), 3),
                "others_cores": round(max(0.0, others) / self._wall, 2) if self._wall else None,
                "loadavg_1m": round(os.getloadavg()[0], 2),
            },
        }
