"""The sequencer: batches in position order, each once, gaps read back from the database."""

from __future__ import annotations

import threading
from typing import Any

from conftest import FakeClock

from chatd.log import Batch, Left, Logged
from chatd.sequencer import CHECK_INTERVAL, HOLD, READ_BACK_PAGE, Sequencer


class Recorder:
    """The fan-out's place: what was delivered, position by position."""

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.posts: dict[int, Any] = {}

    def deliver(self, entries: list[Logged], posts: dict[int, Any]) -> None:
        self.positions.extend(entry.position for entry in entries)
        self.posts.update(posts)


class Log:
    """The database's place: the log as committed, and how often it was read."""

    def __init__(self) -> None:
        self.entries: dict[int, Logged] = {}
        self.reads: list[tuple[int, int]] = []
        self.heads = 0

    def commit(self, first: int, last: int, node: str = "b") -> Batch:
        entries: list[Logged] = [Left(p, "general", f"user{p}") for p in range(first, last + 1)]
        for entry in entries:
            self.entries[entry.position] = entry
        return Batch(node, first, last, entries)

    def log_head(self) -> int:
        self.heads += 1
        return max(self.entries, default=0)

    def log_between(self, first: int, last: int) -> list[Logged]:
        self.reads.append((first, last))
        return [self.entries[p] for p in range(first, last + 1) if p in self.entries]


def make(position: int = 0) -> tuple[Sequencer, Recorder, Log, FakeClock]:
    recorder, log, clock = Recorder(), Log(), FakeClock()
    sequencer = Sequencer(recorder, position, log, clock=clock)  # type: ignore[arg-type]
    return sequencer, recorder, log, clock


def test_batches_in_order_are_delivered_at_once_and_repeats_are_dropped() -> None:
    sequencer, recorder, log, _clock = make()
    first, second = log.commit(1, 2), log.commit(3, 3)
    for batch in (first, second, first, second):
        sequencer.received(batch)
    assert recorder.positions == [1, 2, 3]
    assert sequencer.delivered == 3


def test_an_early_batch_waits_for_the_one_before_it() -> None:
    sequencer, recorder, log, _clock = make()
    first, second, third = log.commit(1, 1), log.commit(2, 3), log.commit(4, 4)
    sequencer.received(third)
    sequencer.received(second)
    assert recorder.positions == []
    sequencer.received(first)
    assert recorder.positions == [1, 2, 3, 4]
    assert log.reads == []


def test_a_missing_batch_is_read_back_after_the_hold() -> None:
    sequencer, recorder, log, clock = make()
    log.commit(1, 2)  # its frame is lost
    sequencer.received(log.commit(3, 3))
    sequencer.repair()
    assert recorder.positions == [] and log.reads == []  # not yet: it may be on its way
    clock.advance(2 * HOLD)
    sequencer.repair()
    assert log.reads == [(1, 2)]
    assert recorder.positions == [1, 2, 3]


def test_this_nodes_parked_batch_keeps_its_replies_over_its_echo() -> None:
    sequencer, recorder, log, clock = make()
    log.commit(1, 1)
    own = log.commit(2, 2, node="a")
    sequencer.committed(own, {2: "reply slot"})  # type: ignore[dict-item]
    sequencer.received(own)  # its echo from the bus, while it waits
    clock.advance(2 * HOLD)
    sequencer.repair()
    assert recorder.positions == [1, 2]
    assert recorder.posts == {2: "reply slot"}


def test_a_read_back_never_takes_a_batch_of_this_node_in_flight() -> None:
    """The writer holds `writing` from its commit until its batch is handed over."""
    sequencer, recorder, log, clock = make()
    log.commit(1, 1)
    sequencer.received(log.commit(3, 3))
    with sequencer.writing:
        log.commit(4, 4, node="a")  # committed, not handed over yet
        clock.advance(2 * HOLD)
        repair = threading.Thread(target=sequencer.repair)
        repair.start()
        repair.join(0.2)
        assert repair.is_alive()  # waits for the writer
    repair.join(5)
    assert log.reads == [(1, 2)]
    assert recorder.positions == [1, 3]


def test_resync_reads_everything_up_to_the_head_in_pages() -> None:
    sequencer, recorder, log, _clock = make()
    last = READ_BACK_PAGE + 10
    log.commit(1, last)
    sequencer.resync()
    sequencer.repair()
    assert log.reads == [(1, READ_BACK_PAGE), (READ_BACK_PAGE + 1, last)]
    assert recorder.positions == list(range(1, last + 1))


def test_the_position_check_acts_on_the_second_lagging_check_only() -> None:
    sequencer, recorder, log, clock = make()
    log.commit(1, 1)
    clock.advance(CHECK_INTERVAL)
    sequencer.repair()
    assert recorder.positions == []  # behind once: the frame may be on its way
    sequencer.received(log.commit(2, 2))  # a later frame comes, not the missing one
    clock.advance(CHECK_INTERVAL)
    sequencer.repair()
    assert recorder.positions == [1, 2]
    assert (1, 1) in log.reads


def test_a_check_that_finds_the_frame_arrived_does_nothing() -> None:
    sequencer, recorder, log, clock = make()
    batch = log.commit(1, 1)
    clock.advance(CHECK_INTERVAL)
    sequencer.repair()
    sequencer.received(batch)  # it was on its way
    clock.advance(CHECK_INTERVAL)
    sequencer.repair()
    assert recorder.positions == [1]
    assert log.reads == []


def test_a_task_runs_only_once_the_log_is_delivered_that_far() -> None:
    sequencer, _recorder, log, _clock = make()
    ran: list[int] = []
    sequencer.received(log.commit(1, 2))
    sequencer.when_delivered_upto(2, lambda: ran.append(2))
    sequencer.when_delivered_upto(3, lambda: ran.append(3))
    assert ran == [2]


def test_the_repair_thread_ends_as_soon_as_it_is_woken_at_a_stop() -> None:
    """A server's stop must not wait out the position check's interval (it used to: a
    second per stop)."""
    sequencer, _recorder, log, _clock = make()  # the clock stands still: the wait is CHECK_INTERVAL
    stopped = threading.Event()
    thread = threading.Thread(target=sequencer.repair_until, args=(stopped,), daemon=True)
    thread.start()
    stopped.set()
    sequencer.wake()
    thread.join(CHECK_INTERVAL / 2)
    assert not thread.is_alive()
    assert log.heads == 0  # and no round of repair after the stop
