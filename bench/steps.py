"""The building blocks of the scenarios: connecting crowds, senders with a window or a
schedule, quiescence, and measurement around the measured part.

Shared by every scenario in loadgen.py; each helper bounds its waits by the
scenario's deadline (`Run.left()`), which is what makes every run end by itself.
"""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.clients import ChatClient, IrcClient
from bench.procstat import CpuMeter
from bench.tracker import Receiver, Stream, Tracker, payload

PASSWORD = "bench-password"  # why: accounts exist only in a throwaway benchmark database.
SETUP_CONCURRENCY = 100  # why: connect/login bursts larger than this only queue in the server.
SETTLE = 0.3  # seconds to keep listening after the last delivery, to catch duplicates


@dataclass(frozen=True, slots=True)
class Target:
    """The server under test: its protocol ("chatd" or "irc"), port and process id.

    `workdir` is the directory that holds its database, when the runner made it: the
    fdatasync probe runs there, on the same disk and file system as the database.
    """

    kind: str
    port: int
    pid: int
    workdir: str | None = None
    password: str | None = None  # IRC: log in with PASS nick:password (chatd's IRC listener)
    # why: several chatd nodes (bench.run --nodes) are one server reached through any of
    # them: (port, pid) of each, the first being `port` and `pid`; empty for one server.
    nodes: tuple[tuple[int, int], ...] = ()

    @property
    def pids(self) -> tuple[int, ...]:
        """Every server process whose CPU counts: the nodes, or the one server."""
        return tuple(pid for _port, pid in self.nodes) or (self.pid,)

    def port_of(self, index: int) -> int:
        """The port the `index`-th client of a room connects to: the nodes take turns."""
        if not self.nodes:
            return self.port
        return self.nodes[index % len(self.nodes)][0]

    def far_port(self, index: int) -> int:
        """As `port_of`, but never the first node's when there are several: where the
        receivers of a sender on the first node go to measure the way across nodes."""
        if len(self.nodes) < 2:
            return self.port
        return self.nodes[1 + index % (len(self.nodes) - 1)][0]

    def meter(self) -> CpuMeter:
        return CpuMeter(*self.pids)


@dataclass(slots=True)
class Hooks:
    """Called around the measured part only (the runner attaches a profiler here)."""

    start: Callable[[], None] = lambda: None
    stop: Callable[[], None] = lambda: None


@dataclass(slots=True)
class Run:
    """A scenario's shared state: the measured clock and the first failure, if any."""

    deadline: float
    failures: list[str] = field(default_factory=list)

    def left(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("scenario deadline passed")
        return remaining


def raise_nofile(needed: int) -> int:
    """Raise RLIMIT_NOFILE towards `needed` (+ margin); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


async def bounded(concurrency: int, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the jobs with at most `concurrency` at a time; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


async def chat_member(port: int, name: str, rooms: list[str]) -> ChatClient:
    client = await ChatClient.connect(port, name)
    await client.login(name, PASSWORD)
    for room in rooms:
        await client.call("join", room=room)
    return client


async def irc_member(
    port: int, nick: str, channels: list[str], password: str | None = None
) -> IrcClient:
    client = await IrcClient.connect(port, nick, password=password)
    for channel in channels:
        await client.join(channel)
    return client


async def quiesce(clients: list[ChatClient] | list[IrcClient], run: Run) -> None:
    """A ping round trip on every connection: all earlier events have arrived."""
    # why: with thousands of connections a round trip can take longer than one setup step.
    pings = [
        c.request("ping", run.left()) if isinstance(c, ChatClient) else c.ping(run.left())
        for c in clients
    ]
    await asyncio.wait_for(asyncio.gather(*pings), run.left())


async def wait_delivered(streams: list[Stream], acks: bool, run: Run) -> None:
    """Until every message sent so far is everywhere (and acknowledged)."""
    for stream in streams:
        while stream.completed < stream.sent or (acks and stream.acked < stream.sent):
            if run.failures:
                return
            stream.progress.clear()
            await asyncio.wait_for(stream.progress.wait(), run.left())


def close_all(clients: list[ChatClient] | list[IrcClient]) -> list[str]:
    """Close every connection; returns the protocol violations they saw."""
    violations: list[str] = []
    for client in clients:
        violations.extend(client.violations)
        client.close()
    return violations


def ack_handler(
    tracker: Tracker, stream: Stream, run: Run
) -> Callable[[dict[str, Any], float], None]:
    def on_reply(reply: dict[str, Any], now: float) -> None:
        if reply.get("ok"):
            tracker.ack(stream, reply["message"]["id"], now)
        else:
            run.failures.append(f"send failed: {reply}")
            stream.progress.set()

    return on_reply


async def windowed_sender(
    client: ChatClient | IrcClient,
    room: str,
    stream: Stream,
    tracker: Tracker,
    window: int,
    run: Run,
) -> None:
    """Send the stream's messages, never more than `window` ahead of the slowest receiver."""
    acks = isinstance(client, ChatClient)
    on_reply = ack_handler(tracker, stream, run) if isinstance(client, ChatClient) else None
    for seq in range(stream.total):
        while stream.ahead(acks) >= window:
            if run.failures:
                return
            stream.progress.clear()
            await asyncio.wait_for(stream.progress.wait(), run.left())
        text = payload(stream.index, seq)
        if isinstance(client, ChatClient):
            assert on_reply is not None
            stream.sent_at[seq] = client.send("send", on_reply, room=room, text=text)
        else:
            stream.sent_at[seq] = client.privmsg(room, text)
        stream.sent += 1


async def paced_sender(
    client: ChatClient,
    room: str,
    stream: Stream,
    tracker: Tracker,
    rate: float,
    run: Run,
    stop: asyncio.Event | None = None,
) -> float:
    """Send at `rate` msgs/s on a fixed schedule; returns the worst lag behind it (s)."""
    on_reply = ack_handler(tracker, stream, run)
    start = time.perf_counter()
    worst_lag = 0.0
    for seq in range(stream.total):
        if run.failures or (stop is not None and stop.is_set()):
            break
        due = start + seq / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            worst_lag = max(worst_lag, -delay)
        run.left()
        stream.sent_at[seq] = client.send("send", on_reply, room=room, text=payload(0, seq))
        stream.sent += 1
    return worst_lag


def attach_receiver(client: ChatClient | IrcClient, tracker: Tracker, group: int = 0) -> None:
    receiver: Receiver = tracker.receiver(
        client.name if isinstance(client, ChatClient) else client.nick, group
    )
    deliver = tracker.deliver
    if isinstance(client, ChatClient):

        def on_message(frame: dict[str, Any], now: float) -> None:
            # why: a file announcement (the transfer scenario's upload) is no stream's message.
            if "file" not in frame:
                deliver(receiver, frame["text"], now, frame["room"], frame["id"])

        client.on_message = on_message
        client.take_line = functools.partial(tracker.take_line, receiver)
    else:
        client.on_privmsg = lambda _target, text, now: deliver(receiver, text, now)


def measured(meter: CpuMeter, wall: float, tracker: Tracker) -> dict[str, Any]:
    return {
        "wall_s": round(wall, 4),
        "server_cpu_s": round(meter.server, 4),
        **(
            {"node_cpu_s": [round(seconds, 4) for seconds in meter.per_process]}
            if len(meter.pids) > 1
            else {}
        ),
        "messages_sent": sum(stream.sent for stream in tracker.streams.values()),
        "server_cpu_ticks_s": round(meter.server_ticks, 3),
        "server_cpu_source": "schedstat" if meter.server_exact is not None else "ticks",
        "server_system_cpu_s": round(meter.server_system, 3),
        "server_cpu_util": round(meter.server / wall, 3) if wall else None,
        "generator_cpu_util": round(meter.generator / wall, 3) if wall else None,
        **tracker.report(),
    }


FSYNC_BLOCK = 1024  # bytes appended before each fdatasync: about one small WAL frame
FSYNC_SECONDS = 10.0  # why: a slow disk ends the probe early instead of the scenario's deadline


def fdatasync_probe(directory: str, count: int, name: str = "fsync-probe.bin") -> list[float]:
    """Seconds of each of `count` (1 KiB append, fdatasync) pairs on a file in `directory`.

    Why: a first join waits for its SQLite commit, so its floor is this disk's fdatasync;
    measured in the same run, beside the database, the goal "first join p99 <= fdatasync
    p99 + 0.5 ms" can be judged without trusting a figure from another day.
    """
    samples: list[float] = []
    block = b"f" * FSYNC_BLOCK
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        stop = time.monotonic() + FSYNC_SECONDS
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - started)
            if time.monotonic() > stop:
                break
    finally:
        os.close(fd)
        os.unlink(path)
    return samples


def array_where(tracker: Tracker, keep: Callable[[float], bool]) -> list[float]:
    """The delivery latencies of messages whose send time passes `keep`."""
    return [lat for lat, at in zip(tracker.latency, tracker.latency_at, strict=True) if keep(at)]
