"""RedisBus's publishing: batch frames alone go out without MULTI/EXEC, still all and in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

import pytest
from redis_server import RedisServer

from chatd.log import Batch, Posted
from chatd.records import Message
from chatd.redisbus import RedisBus

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
TS = "2026-11-30T09:00:00.000Z"


class Receiver:
    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.resyncs = 0
        self.online: set[str] = set()
        self.changed = threading.Event()

    def received(self, batch: Batch) -> None:
        self.firsts.append(batch.first)
        self.changed.set()

    def resync(self) -> None:
        self.resyncs += 1
        self.changed.set()

    def online_elsewhere(self, came: Iterable[str], went: Iterable[str]) -> None:
        self.online |= set(came)
        self.online -= set(went)
        self.changed.set()


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not callable(condition) or not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}")
        time.sleep(0.01)


def batch(position: int) -> Batch:
    message = Message(position, "room", "alice", f"message {position}", TS)
    return Batch("", position, position, [Posted(position, message)])


@pytest.fixture
def pair(clean_redis: RedisServer) -> Iterator[tuple[RedisBus, RedisBus, Receiver]]:
    a, b = RedisBus(clean_redis.url, "a"), RedisBus(clean_redis.url, "b")
    receivers = Receiver(), Receiver()
    for bus, receiver in zip((a, b), receivers, strict=True):
        bus.start(receiver, receiver)
    try:
        wait_for(lambda: all(r.resyncs for r in receivers), "both subscribed")
        yield a, b, receivers[1]
    finally:
        a.stop()
        b.stop()


def exec_calls(server: RedisServer) -> int:
    stats = server.command("INFO", "commandstats").get("cmdstat_exec", {})
    return int(stats.get("calls", 0))


def test_batches_arrive_all_and_in_order_around_a_presence_change(
    pair: tuple[RedisBus, RedisBus, Receiver], clean_redis: RedisServer
) -> None:
    a, _b, at_b = pair
    # back to back first, so most rounds of the publisher hold several frames
    for position in range(1, 201):
        a.publish(batch(position))
        if position == 100:
            a.presence("carol", True)
    wait_for(lambda: len(at_b.firsts) >= 200, "200 batches at b")
    # then one at a time, each its own round
    before = exec_calls(clean_redis)
    for position in range(201, 241):
        a.publish(batch(position))
        time.sleep(0.005)
    wait_for(lambda: len(at_b.firsts) >= 240, "240 batches at b")
    assert at_b.firsts == list(range(1, 241))
    wait_for(lambda: at_b.online == {"carol"}, "carol online at b")
    # why: only a round with a presence change or a heartbeat (one a second) is a
    # transaction; the 40 rounds of batches alone are not
    assert exec_calls(clean_redis) - before <= 5


def test_a_lone_batch_is_published_as_it_is(pair: tuple[RedisBus, RedisBus, Receiver]) -> None:
    a, _b, at_b = pair
    a.publish(batch(7))
    wait_for(lambda: at_b.firsts == [7], "the batch at b")
