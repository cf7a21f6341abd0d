"""A connection's outgoing bytes: a bounded queue, written without waking a thread when it can.

Putting never blocks. Whoever puts bytes while nobody is writing tries a
non-blocking send at once, so the common case (a reader keeping up) costs one
syscall and no thread switch. Only bytes the socket will not take now go to
the connection's writer thread, started when first needed and gone again
once the queue is empty, so an idle connection holds no writer thread.

Replies are queued in request order: a request answered later (a message
waiting for its batch commit) reserves a `ReplySlot`, and nothing queued
after a slot leaves before the slot is filled.

A peer that reads too slowly fills its queue; the next put overflows it, the
queue is replaced by the `sendq_exceeded` event, and the connection is closed
(after that event if the socket still takes it, within `stall_timeout`).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterable

from chatd.transport import Transport

# why: how long a closing writer waits for a peer that takes no bytes before dropping it.
STALL_TIMEOUT = 2.0


class ReplySlot:
    """A reply's place in the queue, reserved before the reply is known or filled at once.

    A `barrier` is a reply no later event may pass: a join's, whose history
    the room's next events follow.
    """

    __slots__ = ("barrier", "data", "dropped")

    def __init__(self, data: bytes | None = None, *, barrier: bool = False) -> None:
        self.data = data
        self.dropped = False
        self.barrier = barrier


class SendQueue:
    def __init__(
        self,
        transport: Transport,
        limit_bytes: int,
        overflow_frame: bytes,
        *,
        on_stop: Callable[[], None],
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self._transport = transport
        self._sock = transport.sock
        self._limit = limit_bytes
        self._overflow_frame = overflow_frame
        self._on_stop = on_stop
        self._stall_timeout = stall_timeout
        # guards every field below; held for bookkeeping only, never across a syscall
        self._lock = threading.Lock()
        self._items: deque[bytes | ReplySlot] = deque()  # bytes: events; slots: replies
        self._unfilled = 0  # slots in _items still waiting for their reply
        self._queued = 0  # bytes of filled items, and of sealed bytes not yet sent
        self._unsent = b""  # sealed bytes the socket did not take; the writer thread's to send
        self._writing = False  # one thread at a time seals and writes
        self._writer: threading.Thread | None = None
        self._closing = False
        self._stopped = False
        # held until stopped: join() waits on it (lighter than an Event, per connection)
        self._running = threading.Lock()
        self._running.acquire()
        self.overflowed = False

    @property
    def closing(self) -> bool:
        return self._closing

    def put(self, data: bytes, *, event: bool = False, barrier: bool = False) -> bool:
        """Queue `data`, an event or a reply; False when closing or this put overflowed it.

        An `event` goes ahead of every reply slot still waiting (and of the
        replies queued behind them), but never ahead of another event or a
        `barrier` reply: events are unsolicited and may come between any two
        replies, and the waiting slots are answered by later batches, whose
        ids are higher. So a connection that sends sees its rooms' ids
        ascending even with a ping answered between two of its sends. (A
        connection with replies in the batch itself gets it by put_in_order.)
        """
        with self._lock:
            if self._closing:
                return False
            if not self._items and not self._writing and not self._stopped:
                self._writing = True  # the common case: nothing waiting, send it now
                self._queued += len(data)
            elif self._queued and self._queued + len(data) > self._limit:
                self._overflow()
                if not self._claim():
                    return False
                data = b""
            else:
                if event:
                    self._enqueue_event(data)
                else:
                    self._items.append(ReplySlot(data, barrier=barrier))
                self._queued += len(data)
                if not self._claim():
                    return True
                data = b""
        self._drain(data)
        return not self.overflowed

    def _enqueue_event(self, data: bytes) -> None:
        """Before the first slot still waiting, unless an event or barrier is after it."""
        items = self._items
        if not self._unfilled:
            items.append(data)
            return
        index = len(items)
        waiting = 0
        while True:
            index -= 1
            item = items[index]
            if not isinstance(item, ReplySlot) or item.barrier:
                index += 1  # behind the last event or barrier
                break
            if item.data is None:
                waiting += 1
                if waiting == self._unfilled:
                    break  # before the first slot still waiting
        items.insert(index, data)

    def reserve(self) -> ReplySlot:
        """A slot for a reply to be filled later; bytes put after it wait for it."""
        slot = ReplySlot()
        with self._lock:
            if self._closing:
                slot.dropped = True
            else:
                self._items.append(slot)
                self._unfilled += 1
        return slot

    def fill(self, replies: Iterable[tuple[ReplySlot, bytes]]) -> None:
        """Fill reserved slots (once each) and send whatever that lets go."""
        with self._lock:
            for slot, data in replies:
                self._fill_slot(slot, data)
            if not self._claim():
                return
        self._drain()

    def put_in_order(self, items: Iterable[bytes | tuple[ReplySlot, bytes]]) -> None:
        """Events and replies of one committed batch, in message id order.

        A reply `(slot, data)` fills its slot where the request left it; each
        event goes right after the reply before it in `items`, or, before any
        reply, right before the first slot `items` fills. So a connection that
        both sends and receives sees the batch's ids ascending, its own
        replies included, while replies to its other requests keep their places.
        """
        items = list(items)
        incoming = sum(len(item) for item in items if not isinstance(item, tuple))
        with self._lock:
            if self._closing:
                return
            if self._queued and self._queued + incoming > self._limit:
                self._overflow()
            else:
                self._place(items)
            if not self._claim():
                return
        self._drain()

    def _place(self, items: list[bytes | tuple[ReplySlot, bytes]]) -> None:
        """put_in_order's queueing (lock held)."""
        replies = [item for item in items if isinstance(item, tuple)]
        if len(replies) == len(items):  # replies only: nothing to place
            for slot, data in replies:
                self._fill_slot(slot, data)
            return
        anchor = self._first_slot(items)
        for item in items:
            if isinstance(item, tuple):
                slot, data = item
                self._fill_slot(slot, data)
                anchor = self._index_after(slot)
                continue
            self._queued += len(item)
            if anchor is None:
                self._enqueue_event(item)
            else:
                self._items.insert(anchor, item)
                anchor += 1

    def _fill_slot(self, slot: ReplySlot, data: bytes) -> None:
        if not slot.dropped and slot.data is None:
            slot.data = data
            self._queued += len(data)
            self._unfilled -= 1

    def _first_slot(self, items: list[bytes | tuple[ReplySlot, bytes]]) -> int | None:
        """Where the first slot that `items` fills waits in the queue (lock held)."""
        for item in items:
            if isinstance(item, tuple):
                return self._position(item[0])
        return None

    def _index_after(self, slot: ReplySlot) -> int | None:
        position = self._position(slot)
        return None if position is None else position + 1

    def _position(self, slot: ReplySlot) -> int | None:
        try:
            return self._items.index(slot)
        except ValueError:  # dropped with the queue's contents
            return None

    def close(self, final: bytes | None = None) -> None:
        """Accept nothing more; what is queued (and `final`) is sent, then the writer stops."""
        with self._lock:
            if self._closing:
                return
            if final is not None:
                self._items.append(final)
            self._closing = True
            if not self._claim():
                return
        self._drain()

    def join(self, timeout: float) -> None:
        """Wait until everything is sent or given up on."""
        if self._running.acquire(timeout=timeout):
            self._running.release()

    def _overflow(self) -> None:
        for item in self._items:
            if isinstance(item, ReplySlot):
                item.dropped = True
        self._items = deque([self._overflow_frame])
        self._unfilled = 0
        self._queued = len(self._overflow_frame) + len(self._unsent)
        self._closing = True
        self.overflowed = True

    def _claim(self) -> bool:
        """Take the right to write if nobody has it and something is ready (lock held)."""
        if self._writing or self._stopped:
            return False
        if not self._ready() and not (self._closing and not self._items):
            return False
        self._writing = True
        return True

    def _ready(self) -> bool:
        return bool(self._items) and not (
            isinstance(self._items[0], ReplySlot) and self._items[0].data is None
        )

    def _take(self) -> bytes:
        """Pop the ready prefix of the queue as one buffer (lock held)."""
        parts: list[bytes] = []
        while self._items:
            head = self._items[0]
            if isinstance(head, ReplySlot):
                if head.data is None:
                    break
                parts.append(head.data)
            else:
                parts.append(head)
            self._items.popleft()
        return b"".join(parts)

    def _next(self) -> tuple[bytes, bool]:
        """(ready bytes, False), or (b"", finished) after giving up the right to write.

        `finished` means closing with nothing left: the caller then stops the
        queue. Lock held.
        """
        data = self._take()
        if data:
            return data, False
        self._writing = False
        self._writer = None
        return b"", self._closing and not self._items and not self._unsent

    def _drain(self, first: bytes = b"") -> None:
        """Send `first` and what is ready without blocking; a remainder goes to a writer thread.

        The caller holds the right to write; `first` is already counted in _queued.
        """
        data = first
        if not data:
            with self._lock:
                data, finished = self._next()
        while data:
            wire = self._seal(data)
            if wire is None:
                break
            sent = self._send_now(wire)
            if sent is None:
                break
            with self._lock:
                self._queued -= len(data) - (len(wire) - sent)
                if sent < len(wire):
                    self._unsent = wire[sent:]
                    self._start_writer()
                    return
                data, finished = self._next()
        if data or finished:  # data left means the peer is gone
            self._stop()

    def _seal(self, data: bytes) -> bytes | None:
        try:
            return self._transport.seal(data)
        except (ssl.SSLError, OSError):
            return None

    def _send_now(self, wire: bytes | memoryview) -> int | None:
        try:
            return self._sock.send(wire, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return None

    def _start_writer(self) -> None:
        """Hand the right to write to a new writer thread (lock held, right held)."""
        self._writer = threading.Thread(target=self._run, name="chatd-writer", daemon=True)
        self._writer.start()

    def _run(self) -> None:
        """The writer thread: owns writing until the queue is empty, then exits."""
        while True:
            if not self._write_blocking(self._unsent):
                break
            with self._lock:
                self._queued -= len(self._unsent)
                self._unsent = b""
                data, finished = self._next()
            if not data:
                if finished:
                    break
                return
            wire = self._seal(data)
            if wire is None:
                break
            with self._lock:
                self._queued += len(wire) - len(data)
            self._unsent = wire
        self._stop()

    def _write_blocking(self, wire: bytes) -> bool:
        """Write all of `wire`; False when the peer is gone, or stalls while we are closing."""
        view = memoryview(wire)
        poller = select.poll()
        poller.register(self._sock, select.POLLOUT)
        while view:
            sent = self._send_now(view)
            if sent is None:
                return False
            view = view[sent:]
            if view and not poller.poll(self._stall_timeout * 1000):
                with self._lock:
                    if self._closing:
                        return False
        return True

    def _stop(self) -> None:
        """Nothing more will be written: drop the rest and let the connection close."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._closing = True
            self._writing = False
            self._writer = None
            for item in self._items:
                if isinstance(item, ReplySlot):
                    item.dropped = True
            self._items.clear()
            self._unfilled = 0
        self._running.release()
        self._on_stop()
