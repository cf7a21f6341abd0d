"""A connection's outgoing bytes: a bounded queue drained by the connection's own writer.

Putting never blocks, so fan-out to a room never waits for any one peer. A
peer that reads too slowly fills its queue; the next put overflows it, the
queue is replaced by the `sendq_exceeded` event, and the connection is closed
(after that event if the socket still takes it, within `stall_timeout`).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Callable

from chatd.transport import Transport

# why: how long a closing writer waits for a peer that takes no bytes before dropping it.
STALL_TIMEOUT = 2.0


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
        # guards every field below; never held while writing to the socket
        self._cond = threading.Condition(threading.Lock())
        self._chunks: list[bytes] = []
        self._queued = 0  # bytes queued or being written
        self._closing = False
        self.overflowed = False
        self._thread = threading.Thread(target=self._run, name="chatd-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, data: bytes) -> bool:
        """Queue `data`; False when the queue is closing or this put overflowed it."""
        with self._cond:
            if self._closing:
                return False
            if self._queued and self._queued + len(data) > self._limit:
                self._chunks = [self._overflow_frame]
                self._closing = True
                self.overflowed = True
                self._cond.notify()
                return False
            self._chunks.append(data)
            self._queued += len(data)
            self._cond.notify()
            return True

    def close(self, final: bytes | None = None) -> None:
        """Accept nothing more; the writer sends what is queued (and `final`), then stops."""
        with self._cond:
            if self._closing:
                return
            if final is not None:
                self._chunks.append(final)
            self._closing = True
            self._cond.notify()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def closing(self) -> bool:
        return self._closing

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._closing:
                        self._cond.wait()
                    if not self._chunks:
                        return
                    data = b"".join(self._chunks)
                    self._chunks.clear()
                try:
                    wire = self._transport.seal(data)
                except (ssl.SSLError, OSError):
                    return
                written = self._write(wire)
                with self._cond:
                    self._queued -= len(data)
                if not written:
                    return
        finally:
            with self._cond:
                self._closing = True
                self._chunks.clear()
            self._on_stop()

    def _write(self, data: bytes) -> bool:
        """Write all of `data`; False when the peer is gone, or stalls while we are closing."""
        view = memoryview(data)
        poller = select.poll()
        poller.register(self._sock, select.POLLOUT)
        while view:
            try:
                sent = self._sock.send(view, socket.MSG_DONTWAIT)
            except (BlockingIOError, TimeoutError, InterruptedError):
                sent = 0
            except OSError:
                return False
            view = view[sent:]
            if view and not poller.poll(self._stall_timeout * 1000):
                with self._cond:
                    if self._closing:
                        return False
        return True
