"""Where idle connections wait for their next request without holding a thread.

A logged-in connection that has sent nothing for a while hands its socket
to the parking lot, and its reader thread ends. One thread watches every
parked socket with the system's selector (epoll on Linux) and, when one
becomes readable (a request, the peer closing, or the server shutting the
socket), gives it back to its connection, which starts a reader thread again.

Most clients of a chat server are idle most of the time; a thread costs about
20 KiB of memory and a share of the scheduler, a parked socket almost nothing.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class ParkingLot:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        # guards the selector's registrations, which two threads change
        self._lock = threading.Lock()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="chatd-parking", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def park(self, sock: socket.socket, resume: Callable[[], None]) -> None:
        """Call `resume` (on the parking thread) once `sock` is readable or closed."""
        with self._lock:
            self._selector.register(sock, selectors.EVENT_READ, resume)

    def unpark(self, sock: socket.socket) -> Callable[[], None] | None:
        """Take `sock` back if it is parked: its resume callback, now the caller's to call."""
        with self._lock:
            try:
                key = self._selector.unregister(sock)
            except (KeyError, ValueError):  # not parked, or already closed
                return None
        resume: Callable[[], None] = key.data
        return resume

    def stop(self, timeout: float) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        self._thread.join(timeout)
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _run(self) -> None:
        while True:
            try:
                ready = self._selector.select()
            except (OSError, ValueError):  # closed by stop()
                return
            for key, _events in ready:
                if key.data is None:
                    return
                try:
                    with self._lock:
                        self._selector.unregister(key.fileobj)
                    key.data()
                except Exception:
                    log.exception("resuming a parked connection failed")
