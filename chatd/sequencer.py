"""The sequencer: the log's batches delivered in position order, each once, none missing.

Every batch of the log (chatd/log.py) reaches the fan-out through here, in
position order, whoever committed it and however it arrived: this node's
writer hands its own over (`committed`), the bus brings the other nodes'
(`received`). A batch that comes again, or late, is dropped; one that comes
early waits for those before it. Positions are gapless and any position
below a committed one is committed (the writers take turns, chatd/db.py),
so what has not come after HOLD seconds is read back from the database
(`repair`), as is everything up to the head after the bus was cut
(`resync`) or when two position checks in a row find this node behind.

On a single server the writer hands its batches over in order and nothing
else arrives, so each is delivered at once, on the writer's thread, and the
repair thread only checks the head once a second.

Locks, in the order they are taken: `writing` (the writer holds it from
before its commit until the batch is handed over, so a read-back never
takes a batch of this node's in flight for a lost one, and never answers
its senders' requests as plain events), then the delivery lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from chatd.fanout import Fanout, Post
from chatd.log import Batch, Logged

log = logging.getLogger(__name__)

# why: a batch that comes early usually has the one before it on the bus a moment
# behind; after this long the missing ones are read from the database.
HOLD = 0.05
# why: how often the repair thread compares the log's head with what was delivered.
CHECK_INTERVAL = 1.0
# why: a catch-up after a long cut reads and delivers this many positions at a time.
READ_BACK_PAGE = 1000

Clock = Callable[[], float]


class LogSource(Protocol):
    def log_head(self) -> int: ...

    def log_between(self, first: int, last: int) -> list[Logged]: ...


class Sequencer:
    def __init__(
        self,
        fanout: Fanout,
        position: int,
        source: LogSource,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._fanout = fanout
        self._source = source
        self._clock = clock
        self.writing = threading.Lock()
        # guards the fields below and runs the fan-out: one batch at a time, in order
        self._lock = threading.Lock()
        self._next = position + 1  # the first position not delivered yet
        self._early: dict[int, tuple[Batch, Mapping[int, Post]]] = {}  # by first position
        self._gap_since: float | None = None  # when the oldest wait for a missing batch began
        self._lagging_head: int | None = None  # the head the last position check found ahead
        self._wake = threading.Event()  # a gap opened, or a resync was asked for
        self._resync = False
        self._next_check = clock() + CHECK_INTERVAL  # the next position check, repair thread's

    @property
    def delivered(self) -> int:
        """The last position delivered."""
        return self._next - 1

    def committed(self, batch: Batch, posts: Mapping[int, Post]) -> None:
        """This node's batch (`writing` held); `posts` are its changes with a reply to fill."""
        with self._lock:
            self._take(batch, posts)

    def received(self, batch: Batch) -> None:
        """Another node's batch, or one read back from the database."""
        with self._lock:
            self._take(batch, {})

    def resync(self) -> None:
        """Frames may have been lost: the repair thread catches up to the head at once."""
        self._resync = True
        self._wake.set()

    def wake(self) -> None:
        """The repair thread looks now: at a stop, so that it sees the stop at once."""
        self._wake.set()

    def when_delivered_upto(self, position: int, task: Callable[[], None]) -> None:
        """Run `task` under the delivery lock if everything up to `position` was delivered."""
        with self._lock:
            if self._next > position:
                task()

    # delivery (lock held)

    def _take(self, batch: Batch, posts: Mapping[int, Post]) -> None:
        if batch.last < self._next:
            return  # delivered already, or changes nothing
        if batch.first > self._next:
            # why: setdefault: this node's own batch, parked here, outranks its echo from the bus
            self._early.setdefault(batch.first, (batch, posts))
            if self._gap_since is None:
                self._gap_since = self._clock()
                self._wake.set()
            return
        self._deliver(batch, posts)
        while self._early:
            first = min(self._early)
            if first > self._next:
                self._gap_since = self._clock()  # a new wait begins
                self._wake.set()
                return
            self._deliver(*self._early.pop(first))
        self._gap_since = None

    def _deliver(self, batch: Batch, posts: Mapping[int, Post]) -> None:
        if batch.last < self._next:
            return
        first = self._next
        entries = [entry for entry in batch.entries if entry.position >= first]
        log.debug(
            "delivering %d..%d from %s (%d entries)",
            first,
            batch.last,
            batch.node or "the database",
            len(entries),
        )
        self._next = batch.last + 1
        self._fanout.deliver(entries, posts)

    # repair (the repair thread)

    def repair_until(self, stopped: threading.Event) -> None:
        """Fill gaps and catch up until `stopped` is set; the repair thread's body."""
        while not stopped.is_set():
            self._wake.wait(self._wait())
            self._wake.clear()
            if stopped.is_set():
                return
            try:
                self.repair()
            except Exception:
                log.exception("catching up from the database failed; trying again")
                stopped.wait(CHECK_INTERVAL)

    def repair(self) -> None:
        """One round: a resync asked for, a gap waited on for HOLD, a position check due."""
        if self._resync:
            self._resync = False
            self._read_back(to_head=True)
        if self._gap_is_old():
            self._read_back(to_head=False)
        if self._clock() >= self._next_check:
            self._next_check = self._clock() + CHECK_INTERVAL
            self.check_position()

    def check_position(self) -> None:
        """Compare with the log's head; read back when two checks in a row found this node behind.

        Once is not enough: a batch committed a moment ago is usually on
        its way over the bus.
        """
        with self.writing:
            head = self._source.log_head()
        behind = head > self.delivered
        lagging, self._lagging_head = self._lagging_head, (head if behind else None)
        if lagging is not None and self.delivered < lagging:
            log.warning(
                "batches committed elsewhere did not come (delivered %d, head %d): reading back",
                self.delivered,
                head,
            )
            self._read_back(to_head=True)
            self._lagging_head = None

    def _wait(self) -> float:
        deadline = self._next_check
        since = self._gap_since
        if since is not None:
            deadline = min(deadline, since + HOLD)
        return max(0.0, deadline - self._clock())

    def _gap_is_old(self) -> bool:
        since = self._gap_since
        return since is not None and self._clock() - since >= HOLD

    def _read_back(self, *, to_head: bool) -> None:
        """Read the missing positions from the database and deliver them, a page at a time.

        Up to the first batch waiting here (those before it are missing),
        or to the head; never past a batch of this node's in flight.
        """
        while True:
            with self.writing:
                head = self._source.log_head() if to_head else None
                with self._lock:
                    first = self._next
                    last = min(self._early) - 1 if self._early else head
            if last is None:
                return
            if head is not None:
                last = min(last, head)
            if last < first:
                return
            last = min(last, first + READ_BACK_PAGE - 1)
            entries = self._source.log_between(first, last)
            self.received(Batch("", first, last, entries))
            if not to_head and not self._early:
                return
