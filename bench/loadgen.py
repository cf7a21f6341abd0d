"""chatd's load generator: the scenarios of issue 5, one asyncio process, 127.0.0.1 only.

Each scenario sets up its connections, waits until every one of them is
quiet (a ping round trip), then measures: server CPU (user+sys from /proc)
over exactly the measured part, wall time, and the figures the issue asks
for. Every loop is bounded by a message count and every wait by a deadline,
so a broken server makes a scenario fail with a report, never hang. Every
delivery is checked (see tracker.py); a figure from a run that lost,
duplicated or reordered a message is marked incorrect.

Run one scenario against a server that is already up:

    python -m bench.loadgen --port 7700 --pid $(pidof -s chatd) fanout-1x100 --quick

`bench/run.py` is the usual way: it also starts the server, pinned to a core.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bench.clients import ChatClient, ProtocolViolation
from bench.procstat import rss_kib, status_field
from bench.steps import (
    PASSWORD,
    SETTLE,
    SETUP_CONCURRENCY,
    Hooks,
    Run,
    Target,
    array_where,
    attach_receiver,
    bounded,
    chat_member,
    close_all,
    fdatasync_probe,
    irc_member,
    measured,
    paced_sender,
    quiesce,
    raise_nofile,
    wait_delivered,
    windowed_sender,
)
from bench.tracker import Stream, Tracker, latency_summary, payload
from chatd.connection import PARK_AFTER

__all__ = [
    "PASSWORD",
    "SCENARIOS",
    "Hooks",
    "Scenario",
    "Target",
    "fanout_names",
    "raise_nofile",
]


# --- scenarios -------------------------------------------------------------------------------


def fanout_names(rooms: int, members: int) -> list[list[str]]:
    """The fan-out's members, room by room (chatd's IRC listener needs them as accounts)."""
    return [[f"f{r}m{m}" for m in range(members)] for r in range(rooms)]


async def fanout(
    target: Target,
    hooks: Hooks,
    *,
    rooms: int,
    members: int,
    senders: int,
    messages: int,
    window: int = 100,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """`senders` per room each send `messages`; every other member of the room receives them."""
    run = Run(time.monotonic() + timeout)
    raise_nofile(rooms * members)
    irc = target.kind == "irc"
    names = fanout_names(rooms, members)
    room_names = [f"#fan{r}" if irc else f"fan{r}" for r in range(rooms)]
    # why: with several nodes each room's members take turns over them (member m on node
    # m % N), so the senders (members 0 and 1) are on different nodes when there are two
    jobs: list[Callable[[], Awaitable[Any]]] = [
        (lambda n=name, r=room_names[r]: irc_member(target.port, n, [r], target.password))
        if irc
        else (lambda n=name, r=room_names[r], m=m: chat_member(target.port_of(m), n, [r]))
        for r in range(rooms)
        for m, name in enumerate(names[r])
    ]
    clients = await asyncio.wait_for(bounded(SETUP_CONCURRENCY, jobs), run.left())
    streams = [
        Stream(r * senders + k, messages, members - 1) for r in range(rooms) for k in range(senders)
    ]
    tracker = Tracker(streams, acks=not irc)
    for client in clients:
        attach_receiver(client, tracker)
    await quiesce(clients, run)
    if target.nodes and not irc:
        await settle_joins(clients, rooms * members * (members - 1) // 2, run)

    meter = target.meter()
    meter.start()
    hooks.start()
    started = time.perf_counter()
    timed_out = False
    tasks = [
        asyncio.ensure_future(
            windowed_sender(
                clients[r * members + k],
                room_names[r],
                streams[r * senders + k],
                tracker,
                window,
                run,
            )
        )
        for r in range(rooms)
        for k in range(senders)
    ]
    try:
        await asyncio.gather(*tasks)
        await wait_delivered(streams, not irc, run)
    except TimeoutError:
        timed_out = True
        for task in tasks:
            task.cancel()
    wall = time.perf_counter() - started
    meter.stop()
    hooks.stop()
    await asyncio.sleep(SETTLE)
    result = measured(meter, wall, tracker)
    result["deliveries_per_cpu_s"] = (
        round(tracker.delivered / meter.server) if meter.server else None
    )
    result["deliveries_per_s"] = round(tracker.delivered / wall) if wall else None
    result.update(timed_out=timed_out, failures=run.failures[:5])
    result["violations"] = close_all(clients)[:5]
    result["correct"] = result["correct"] and not timed_out and not result["violations"]
    return result


async def paced(
    target: Target,
    hooks: Hooks,
    *,
    members: int,
    rate: float,
    seconds: float,
    timeout: float = 120.0,
    split: bool = False,
) -> dict[str, Any]:
    """One sender at a fixed rate into a room of `members`: delivery and ack latency.

    `split`: the receivers alternate between the sender's node and another (on one
    server, all on it), and the latencies of each half are reported apart: on several
    nodes, the way across the bus against the way within a node, in the same run.
    """
    run = Run(time.monotonic() + timeout)
    # why: with several nodes the sender is on the first and every receiver on another, so
    # each delivery crosses the bus (split: every other one does)
    ports = [target.port, *(target.far_port(m) for m in range(members - 1))]
    if split:
        ports = [target.port_of(m) for m in range(members)]
    jobs = [(lambda n=f"p{m}", p=ports[m]: chat_member(p, n, ["paced"])) for m in range(members)]
    clients = await asyncio.wait_for(bounded(SETUP_CONCURRENCY, jobs), run.left())
    stream = Stream(0, int(rate * seconds), members - 1)
    tracker = Tracker([stream], acks=True, keep_latency=True)
    for m, client in enumerate(clients[1:], start=1):
        # group 1: on another node than the sender's (split), or would be (one server)
        attach_receiver(client, tracker, m % 2 if split else 0)
    await quiesce(clients, run)
    if target.nodes:
        await settle_joins(clients, members * (members - 1) // 2, run)
    meter = target.meter()
    meter.start()
    hooks.start()
    started = time.perf_counter()
    timed_out = False
    lag = 0.0
    send_wall = 0.0
    try:
        lag = await paced_sender(clients[0], "paced", stream, tracker, rate, run)
        send_wall = time.perf_counter() - started
        await wait_delivered([stream], True, run)
    except TimeoutError:
        timed_out = True
    wall = time.perf_counter() - started
    meter.stop()
    hooks.stop()
    await asyncio.sleep(SETTLE)
    result = measured(meter, wall, tracker)
    result.update(
        rate=rate,
        send_rate=round(stream.sent / send_wall, 1) if send_wall else None,
        # why: an open-loop sender always "achieves" its rate; what the server sustained
        # is messages fully delivered (every receiver, and the ack) per second of wall time.
        delivered_rate=round(stream.completed / wall, 1) if wall else None,
        worst_sender_lag_ms=round(lag * 1000, 2),
        delivery_latency=latency_summary(tracker.latency),
        ack_latency=latency_summary(tracker.ack_latency),
        timed_out=timed_out,
        failures=run.failures[:5],
        violations=close_all(clients)[:5],
    )
    if split:
        same = latency_summary(tracker.group_latency.get(0, []))
        cross = latency_summary(tracker.group_latency.get(1, []))
        result.update(same_node_latency=same, cross_node_latency=cross)
        if same["p99_ms"] is not None and cross["p99_ms"] is not None:
            result["cross_minus_same_p99_ms"] = round(cross["p99_ms"] - same["p99_ms"], 3)
            result["cross_minus_same_p50_ms"] = round(cross["p50_ms"] - same["p50_ms"], 3)
    result["correct"] = result["correct"] and not timed_out and not result["violations"]
    return result


async def idle_rss(
    target: Target, hooks: Hooks, *, clients: int, room_size: int = 50, timeout: float = 900.0
) -> dict[str, Any]:
    """Server RSS growth per idle logged-in client that has joined a room."""
    run = Run(time.monotonic() + timeout)
    raise_nofile(clients)
    warm = await chat_member(target.port, "i-warm", ["idle-warm"])
    await warm.call("send", room="idle-warm", text="warm-up")
    await warm.call("quit")
    warm.close()
    await asyncio.sleep(0.5)
    before = rss_kib(target.pid)
    threads_before = status_field(target.pid, "Threads")
    started = time.perf_counter()
    jobs = [
        (lambda n=f"i{i}", r=f"idle{i // room_size}": chat_member(target.port, n, [r]))
        for i in range(clients)
    ]
    connected = await asyncio.wait_for(bounded(SETUP_CONCURRENCY, jobs), run.left())
    setup_wall = time.perf_counter() - started
    # why: every client has its join reply, so its state exists; once idle for PARK_AFTER
    # its connection is parked, which is the state of an idle client. RSS is read before
    # the liveness check, which wakes every connection.
    await asyncio.sleep(PARK_AFTER + 1.0)
    after = rss_kib(target.pid)
    threads_after = status_field(target.pid, "Threads")
    liveness = run.deadline - time.monotonic()
    try:
        await quiesce(connected, Run(time.monotonic() + min(120.0, run.left())))
        all_answered = True
    except TimeoutError:
        all_answered = False
    ping_wall = round(liveness - (run.deadline - time.monotonic()), 2)
    violations = close_all(connected)
    return {
        "clients": clients,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_per_client_kib": round((after - before) / clients, 2),
        "threads_before": threads_before,
        "threads_after": threads_after,
        "setup_wall_s": round(setup_wall, 2),
        "all_answered_ping": all_answered,
        "ping_round_s": ping_wall,
        "violations": violations[:5],
        "correct": not violations and all_answered,
    }


async def join_latency(
    target: Target,
    hooks: Hooks,
    *,
    joiners: int,
    history: int = 50,
    fsync_samples: int = 1000,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Join a room holding `history` messages: time from `join` to its reply with history.

    The time ends when the reply's bytes are read, not when this coroutine
    resumes: by then the event loop may have parsed the join events that the
    server sent the other members right after the reply. When the server's
    directory is known, fdatasync is timed there too, half before the joins and
    half after, so a first join (which waits for one) can be set beside it.
    """
    run = Run(time.monotonic() + timeout)
    poster = await chat_member(target.port, "j-poster", ["hist"])
    posted = [
        (await poster.call("send", room="hist", text=payload(0, seq)))["message"]["id"]
        for seq in range(history)
    ]
    jobs = [(lambda n=f"j{i}": chat_member(target.port, n, [])) for i in range(joiners)]
    clients = await asyncio.wait_for(bounded(SETUP_CONCURRENCY, jobs), run.left())
    await quiesce([poster, *clients], run)
    expected = posted[-min(history, int(poster.welcome.result()["history_size"])) :]
    wrong = 0
    first: list[float] = []
    again: list[float] = []
    everyone = [poster, *clients]
    announced = sum(c.events.get("join", 0) for c in everyone)
    fsyncs = fdatasync_probe(target.workdir, fsync_samples // 2) if target.workdir else []
    hooks.start()
    for samples in (first, again, again):
        for client in clients:
            reply, seconds = await client.timed_call("join", timeout=run.left(), room="hist")
            samples.append(seconds)
            if [m["id"] for m in reply["history"]] != expected:
                wrong += 1
            if samples is first:
                # why: the generator is one thread; the next join is timed only once it has
                # read this join's events to the members, or their parsing would count.
                announced += len(reply["members"]) - 1
                await events_arrived(everyone, "join", announced, run)
    hooks.stop()
    if target.workdir:
        fsyncs += fdatasync_probe(target.workdir, fsync_samples - fsync_samples // 2)
    violations = close_all([poster, *clients])
    fdatasync = latency_summary(fsyncs)
    first_summary = latency_summary(first)
    margin = None
    if fdatasync["p99_ms"] is not None and first_summary["p99_ms"] is not None:
        margin = round(first_summary["p99_ms"] - fdatasync["p99_ms"], 3)
    return {
        "first_join": first_summary,
        "rejoin": latency_summary(again),
        "fdatasync": fdatasync,
        # the goal: first join p99 at most 0.5 ms above fdatasync p99
        "first_join_p99_over_fdatasync_p99_ms": margin,
        "history_wrong": wrong,
        "violations": violations[:5],
        "correct": not wrong and not violations,
    }


async def settle_joins(clients: list[ChatClient], expected: int, run: Run) -> None:
    """Until the `expected` join events have arrived, then a ping round trip on each.

    Why: on several nodes a ping answers for its own node only; the join events of
    members on another node come over the bus and could still be on their way, and
    would then be read inside the measured part.
    """
    await events_arrived(clients, "join", expected, run)
    await quiesce(clients, run)


async def events_arrived(clients: list[ChatClient], event: str, expected: int, run: Run) -> None:
    """Until the clients have received `expected` events of this kind in all."""
    while sum(c.events.get(event, 0) for c in clients) < expected:
        if time.monotonic() > run.deadline:
            raise TimeoutError(f"only some of {expected} {event} events arrived")
        await asyncio.sleep(0.0005)


async def ingest(
    target: Target,
    hooks: Hooks,
    *,
    senders: int,
    messages: int,
    window: int = 100,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """`senders` each alone in a room send `messages`: acknowledged (durable) msgs/s."""
    run = Run(time.monotonic() + timeout)
    jobs = [
        (lambda i=i: chat_member(target.port_of(i), f"d{i}", [f"ingest{i}"]))
        for i in range(senders)
    ]
    clients = await asyncio.wait_for(bounded(SETUP_CONCURRENCY, jobs), run.left())
    streams = [Stream(i, messages, 0) for i in range(senders)]
    tracker = Tracker(streams, acks=True, keep_latency=True)
    await quiesce(clients, run)
    meter = target.meter()
    meter.start()
    hooks.start()
    started = time.perf_counter()
    tasks = [
        asyncio.ensure_future(
            windowed_sender(clients[i], f"ingest{i}", streams[i], tracker, window, run)
        )
        for i in range(senders)
    ]
    timed_out = False
    try:
        await asyncio.gather(*tasks)
        await wait_delivered(streams, True, run)
    except TimeoutError:
        timed_out = True
        for task in tasks:
            task.cancel()
    wall = time.perf_counter() - started
    meter.stop()
    hooks.stop()
    acked = sum(s.acked for s in streams)
    result = measured(meter, wall, tracker)
    result.update(
        acknowledged=acked,
        acked_per_s=round(acked / wall) if wall else None,
        acked_per_cpu_s=round(acked / meter.server) if meter.server else None,
        ack_latency=latency_summary(tracker.ack_latency),
        timed_out=timed_out,
        failures=run.failures[:5],
        violations=close_all(clients)[:5],
    )
    result["correct"] = result["correct"] and not timed_out and not result["violations"]
    return result


async def chat_while(
    target: Target,
    hooks: Hooks,
    run: Run,
    clients: list[ChatClient],
    room: str,
    disturb: Callable[[], Awaitable[object]],
    *,
    rate: float,
    calm: float,
    tail: float,
    timeout: float,
) -> dict[str, Any]:
    """clients[0] chats in `room` at `rate`, the others receive; after `calm` seconds
    `disturb()` runs. Reports chat latency before it and while it ran."""
    stream = Stream(0, int(rate * timeout), len(clients) - 1)
    tracker = Tracker([stream], acks=True, keep_latency=True)
    for client in clients[1:]:
        attach_receiver(client, tracker)
    await quiesce(clients, run)
    stop = asyncio.Event()
    meter = target.meter()
    meter.start()
    hooks.start()
    chat = asyncio.ensure_future(paced_sender(clients[0], room, stream, tracker, rate, run, stop))
    timed_out = False
    start = end = time.perf_counter()
    try:
        await asyncio.sleep(calm)
        start = time.perf_counter()
        await disturb()
        end = time.perf_counter()
        await asyncio.sleep(tail)
        stop.set()
        await chat
        await wait_delivered([stream], True, run)
    except TimeoutError:
        timed_out = True
        stop.set()
        chat.cancel()
    meter.stop()
    hooks.stop()
    stream.total = stream.sent  # why: the chat ran for as long as the disturbance, not a set count
    tracker.expected_deliveries = stream.sent * stream.receivers
    result = tracker.report()
    result.update(
        disturbance_s=round(end - start, 2),
        chat_latency_calm=latency_summary(array_where(tracker, lambda at: at < start)),
        chat_latency_during=latency_summary(array_where(tracker, lambda at: start <= at <= end)),
        server_cpu_s=round(meter.server, 2),
        timed_out=timed_out,
        failures=run.failures[:5],
    )
    result["correct"] = result["correct"] and not timed_out
    return result


async def login_storm(
    target: Target,
    hooks: Hooks,
    *,
    logins: int,
    chatters: int = 20,
    rate: float = 200.0,
    calm: float = 1.0,
    tail: float = 0.5,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """`logins` connections log in at once while a room chats at `rate`: chat latency."""
    run = Run(time.monotonic() + timeout)
    raise_nofile(logins + chatters)
    jobs = [(lambda n=f"c{i}": chat_member(target.port, n, ["storm"])) for i in range(chatters)]
    clients = await asyncio.wait_for(bounded(SETUP_CONCURRENCY, jobs), run.left())
    # why: accounts the runner did not seed are registered now, outside the measured storm
    # (a seeded name is only looked up, so this pass costs no hashing then).
    for i in range(logins):
        reply = await clients[0].request("register", username=f"s{i}", password=PASSWORD)
        if not reply.get("ok") and reply.get("error") != "username_taken":
            raise ProtocolViolation(f"register s{i}: {reply}")
    login_times: list[float] = []
    login_failures: list[str] = []
    stormers: list[ChatClient] = []

    async def log_in(name: str) -> None:
        started = time.perf_counter()
        try:
            client = await ChatClient.connect(target.port, name)
            stormers.append(client)
            reply = await client.request(
                "login", timeout=run.left(), username=name, password=PASSWORD
            )
            if not reply.get("ok"):
                raise ProtocolViolation(str(reply))
            login_times.append(time.perf_counter() - started)
        except (OSError, TimeoutError, ProtocolViolation) as exc:
            login_failures.append(f"{name}: {type(exc).__name__}: {exc}"[:200])

    result = await chat_while(
        target,
        hooks,
        run,
        clients,
        "storm",
        lambda: asyncio.gather(*(log_in(f"s{i}") for i in range(logins))),
        rate=rate,
        calm=calm,
        tail=tail,
        timeout=timeout,
    )
    result.update(
        logins=logins,
        logged_in=len(login_times),
        login_failures=login_failures[:5],
        login_latency=latency_summary(login_times),
        violations=close_all([*clients, *stormers])[:5],
    )
    result["correct"] = result["correct"] and not result["violations"] and not login_failures
    return result


async def transfer(
    target: Target,
    hooks: Hooks,
    *,
    megabytes: int,
    chatters: int = 20,
    rate: float = 200.0,
    calm: float = 1.0,
    tail: float = 0.5,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """One member uploads a file chunk by chunk while the room chats at `rate`: chat latency."""
    run = Run(time.monotonic() + timeout)
    jobs = [(lambda n=f"t{i}": chat_member(target.port, n, ["xfer"])) for i in range(chatters)]
    clients = await asyncio.wait_for(bounded(SETUP_CONCURRENCY, jobs), run.left())
    uploader = await chat_member(target.port, "uploader", ["xfer"])
    await quiesce([uploader], run)
    data = os.urandom(megabytes * 1024 * 1024)
    problems: list[str] = []

    async def upload() -> None:
        problems.extend(await upload_file(uploader, "xfer", data, run))

    result = await chat_while(
        target,
        hooks,
        run,
        clients,
        "xfer",
        upload,
        rate=rate,
        calm=calm,
        tail=tail,
        timeout=timeout,
    )
    seconds = result["disturbance_s"]
    result.update(
        megabytes=megabytes,
        transfer_mb_per_s=round(megabytes / seconds, 1) if seconds else None,
        failures=[*result["failures"], *problems[:5]],
        violations=close_all([*clients, uploader])[:5],
    )
    result["correct"] = result["correct"] and not result["violations"] and not problems
    return result


async def upload_file(client: ChatClient, room: str, data: bytes, run: Run) -> list[str]:
    """Upload as the `chat` client does: one chunk at a time, each waiting for its reply."""
    digest = hashlib.sha256(data).hexdigest()
    started = await client.request(
        "upload", timeout=run.left(), room=room, name="bench.bin", size=len(data), sha256=digest
    )
    if not started.get("ok"):
        return [f"upload: {started}"]
    step = started["chunk_bytes"]
    for offset in range(0, len(data), step):
        piece = base64.b64encode(data[offset : offset + step]).decode()
        reply = await client.request(
            "chunk", timeout=run.left(), upload=started["upload"], offset=offset, data=piece
        )
        if not reply.get("ok"):
            return [f"chunk at {offset}: {reply}"]
    done = await client.request("finish", timeout=run.left(), upload=started["upload"])
    return [] if done.get("ok") else [f"finish: {done}"]


# --- the scenario table ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario with its full and quick sizes and what the server needs for it."""

    name: str
    about: str
    func: Callable[..., Coroutine[Any, Any, dict[str, Any]]]
    full: dict[str, Any]
    quick: dict[str, Any]
    irc: bool = False  # can also run against an IRC server (--compare-ngircd)
    server_flags: tuple[str, ...] = ()
    seed_users: Callable[[dict[str, Any]], list[str]] | None = None  # accounts made before start
    seed_cost: int = 4  # bcrypt cost of the seeded accounts' hash


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "fanout-1x100",
            "fan-out 1 room x 100 members, 1 sender, window 100",
            fanout,
            dict(rooms=1, members=100, senders=1, messages=2000),
            dict(rooms=1, members=100, senders=1, messages=300),
            irc=True,
        ),
        Scenario(
            "fanout-10x20",
            "fan-out 10 rooms x 20 members x 2 senders, window 100",
            fanout,
            dict(rooms=10, members=20, senders=2, messages=500),
            dict(rooms=10, members=20, senders=2, messages=100),
            irc=True,
        ),
        Scenario(
            "paced-500",
            "500 msg/s paced into a 100-member room: latency",
            paced,
            dict(members=100, rate=500.0, seconds=10.0, timeout=240.0),
            dict(members=100, rate=500.0, seconds=3.0),
        ),
        Scenario(
            "paced-500-split",
            "500 msg/s paced into a 100-member room, receivers on the sender's node and on "
            "another: latency of each half",
            paced,
            dict(members=100, rate=500.0, seconds=10.0, timeout=240.0, split=True),
            dict(members=100, rate=500.0, seconds=3.0, split=True),
        ),
        Scenario(
            "idle-rss",
            "idle logged-in clients, each in a room: RSS per client",
            idle_rss,
            dict(clients=10000),
            dict(clients=500),
            seed_users=lambda kw: [f"i{i}" for i in range(kw["clients"])] + ["i-warm"],
        ),
        Scenario(
            "join-history",
            "join a room holding 50 messages: join -> reply",
            join_latency,
            dict(joiners=200),
            dict(joiners=50),
        ),
        Scenario(
            "ingest-50",
            "durable ingest, 50 senders in 50 rooms: acked msgs/s",
            ingest,
            dict(senders=50, messages=1000),
            dict(senders=50, messages=100),
        ),
        Scenario(
            "transfer",
            "a 24 MiB upload while a 20-member room chats at 200 msg/s",
            transfer,
            dict(megabytes=24),
            dict(megabytes=4),
        ),
        Scenario(
            "login-storm",
            "logins at once (bcrypt cost 12) while a room chats",
            login_storm,
            dict(logins=200),
            dict(logins=20),
            server_flags=("--login-timeout", "600", "--bcrypt-rounds", "12"),
            seed_users=lambda kw: [f"s{i}" for i in range(kw["logins"])],
            seed_cost=12,
        ),
    )
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run one scenario against a running server")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="server process id (for /proc)")
    parser.add_argument("--irc", action="store_true", help="the server speaks IRC")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    kwargs = scenario.quick if args.quick else scenario.full
    target = Target("irc" if args.irc else "chatd", args.port, args.pid)
    result = asyncio.run(scenario.func(target, Hooks(), **kwargs))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0 if result.get("correct") else 1


if __name__ == "__main__":
    sys.exit(main())
