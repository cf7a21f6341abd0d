"""What one bus frame costs, apart from everything else: chatd's own RedisBus, two of them.

The cluster scenarios (`bench.run --nodes`) show what the bus threads cost in
a running node, where the subscribing thread also fans the other nodes'
batches out to its connections. This takes the bus alone: two `RedisBus`
instances (chatd/redisbus.py, as they are) on a private redis-server
(tests/redis_server.py), node a publishing batches of K messages at a paced
rate, node b receiving them into a receiver that only counts, so its
subscribing thread's CPU is reading and decoding a frame and nothing else.
Node a's subscribing thread gets its own frames back (every node is
subscribed to the one channel) and drops them. Per frame, in microseconds
of CPU: node a's publishing thread (queue, encoding, the MULTI/PUBLISH/EXEC
round trip), node b's subscribing thread (read, decode), node a's (read,
decode, drop its own), and redis-server's; and, in this thread with nothing
else around, `encode_frame` and `decode_frame` alone.

    .venv/bin/python -m bench.busframes                  # K = 1, 10, 50, 500
    .venv/bin/python -m bench.busframes --sizes 50 --frames 2000 --rate 500

Thread CPU comes from /proc/self/task/TID/schedstat (nanoseconds), Redis's
from /proc. Every wait is bounded; the redis-server is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from bench.procstat import TreeMeter
from bench.tracker import latency_summary, payload
from chatd.bus import Committed, decode_frame, encode_frame
from chatd.log import Batch, Posted
from chatd.records import Message
from chatd.redisbus import RedisBus
from tests.redis_server import MISSING_SERVER, RedisServer, find_server

SIZES = (1, 10, 50, 500)
FRAMES = 1000
RATE = 200.0  # frames per second: each frame its own round trip, as under load
WAIT = 30.0  # seconds for the last frames to arrive, at most
TS = "2026-11-30T09:00:00.000Z"


class Counting:
    """A receiver and presence sink that only counts what the bus hands it."""

    def __init__(self) -> None:
        self.batches = 0
        self.messages = 0
        self.resyncs = 0
        self.arrived = threading.Event()
        self.expected = 0
        self.published_at: dict[int, float] = {}  # batch.first -> when publish() was called
        self.latency: list[float] = []  # seconds from publish() to here, per frame

    def received(self, batch: Batch) -> None:
        sent = self.published_at.get(batch.first)
        if sent is not None:
            self.latency.append(time.perf_counter() - sent)
        self.batches += 1
        self.messages += len(batch.entries)
        if self.batches >= self.expected:
            self.arrived.set()

    def resync(self) -> None:
        self.resyncs += 1

    def online_elsewhere(self, came: Iterable[str], went: Iterable[str]) -> None:
        pass


def make_batch(size: int, first: int) -> Batch:
    """`size` room messages as a fan-out scenario's writer commits them."""
    entries: list[Posted | Any] = [
        Posted(first + i, Message(first + i, "fan0", "f0m0", payload(0, first + i), TS))
        for i in range(size)
    ]
    return Batch("a", first, first + size - 1, entries)


def _thread_ns(thread: threading.Thread) -> int:
    tid = thread.native_id
    with open(f"/proc/self/task/{tid}/schedstat") as stat:
        return int(stat.read().split()[0])


def _bus_threads(bus: RedisBus) -> dict[str, threading.Thread]:
    # why: RedisBus names its threads chatd-bus-publish and chatd-bus-subscribe
    return {thread.name.removeprefix("chatd-bus-"): thread for thread in bus._threads}


def codec_us(batch: Batch, rounds: int) -> tuple[float, float, int]:
    """(encode, decode) microseconds per frame in this thread alone, and the frame's bytes."""
    frame = Committed("a/00000000", batch)
    data = encode_frame(frame)
    best_encode = best_decode = float("inf")
    count = max(10, 20_000 // max(1, len(batch.entries)))
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(count):
            encode_frame(frame)
        best_encode = min(best_encode, (time.thread_time() - started) / count)
        started = time.thread_time()
        for _ in range(count):
            decode_frame(data)
        best_decode = min(best_decode, (time.thread_time() - started) / count)
    return best_encode * 1e6, best_decode * 1e6, len(data)


@contextlib.contextmanager
def buses(url: str) -> Iterator[tuple[RedisBus, RedisBus, Counting, Counting]]:
    """Two started buses on `url`, each with a counting receiver; stopped on exit."""
    sinks = Counting(), Counting()
    pair = RedisBus(url, "a"), RedisBus(url, "b")
    for bus, sink in zip(pair, sinks, strict=True):
        bus.start(sink, sink)
    try:
        # why: each is subscribed once its first resync is asked for (after the confirmation)
        deadline = time.monotonic() + WAIT
        while not all(sink.resyncs for sink in sinks) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not all(sink.resyncs for sink in sinks):
            raise RuntimeError("the buses did not subscribe in time")
        yield pair[0], pair[1], sinks[0], sinks[1]
    finally:
        for bus in pair:
            bus.stop()


def measure(
    server: RedisServer, redis_pid: int, size: int, frames: int, rate: float
) -> dict[str, Any]:
    """Node a publishes `frames` batches of `size` at `rate`; what each side spent per frame."""
    with buses(server.url) as (a, b, _sink_a, sink_b):
        sink_b.expected = frames
        threads = {"a": _bus_threads(a), "b": _bus_threads(b)}
        names = [(node, kind) for node in threads for kind in threads[node]]
        batches = [make_batch(size, 1 + i * size) for i in range(frames)]
        redis_meter = TreeMeter(redis_pid)
        start = {key: _thread_ns(threads[key[0]][key[1]]) for key in names}
        redis_meter.start()
        started = time.perf_counter()
        for index, batch in enumerate(batches):
            due = started + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sink_b.published_at[batch.first] = time.perf_counter()
            a.publish(batch)
        if not sink_b.arrived.wait(WAIT):
            raise RuntimeError(f"only {sink_b.batches} of {frames} frames arrived")
        wall = time.perf_counter() - started
        redis_meter.stop()
        spent = {key: (_thread_ns(threads[key[0]][key[1]]) - start[key]) / 1e9 for key in names}
    per_frame = {f"{node} {kind}": round(s / frames * 1e6, 2) for (node, kind), s in spent.items()}
    return {
        "size": size,
        "frames": frames,
        "wall_s": round(wall, 3),
        "received": sink_b.batches,
        "messages_received": sink_b.messages,
        "us_per_frame": per_frame,
        "redis_us_per_frame": round(redis_meter.seconds / frames * 1e6, 2),
        # from a.publish() to b's receiver: the bus's own share of a cross-node delivery
        "hop_latency": latency_summary(sink_b.latency),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="messages per frame")
    parser.add_argument("--frames", type=int, default=FRAMES, help="frames per size")
    parser.add_argument("--rate", type=float, default=RATE, help="frames per second")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the codec timing")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    if not 1 <= args.frames <= 100_000 or not all(1 <= size <= 10_000 for size in sizes):
        parser.error("--frames must be 1-100000 and each size 1-10000")
    binary = find_server()
    if binary is None:
        print(f"bench.busframes: {MISSING_SERVER}", file=sys.stderr)
        return 2
    results = []
    server = RedisServer.start(binary)
    try:
        with server.client() as client:
            redis_pid = int(client.info("server")["process_id"])
        for size in sizes:
            encode, decode, length = codec_us(make_batch(size, 1), args.rounds)
            row = measure(server, redis_pid, size, args.frames, args.rate)
            row.update(frame_bytes=length, encode_us=round(encode, 2), decode_us=round(decode, 2))
            results.append(row)
    finally:
        server.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    kinds = sorted({kind for row in results for kind in row["us_per_frame"]})
    header = [
        "msgs/frame",
        "bytes",
        "encode",
        "decode",
        *kinds,
        "redis",
        "hop p50 ms",
        "hop p99 ms",
    ]
    print("microseconds of CPU per frame; the hop is a.publish() -> b's receiver, wall")
    print("  ".join(f"{h:>12}" for h in header))
    for row in results:
        cells = [
            row["size"],
            row["frame_bytes"],
            row["encode_us"],
            row["decode_us"],
            *(row["us_per_frame"].get(kind, "-") for kind in kinds),
            row["redis_us_per_frame"],
            row["hop_latency"]["p50_ms"],
            row["hop_latency"]["p99_ms"],
        ]
        print("  ".join(f"{cell:>12}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
