"""One client's socket, whatever it speaks: a reader thread, the login deadline, parking, closing.

What the bytes mean is the conversation's business (a dialect's, see
chatd/dialects); the connection only moves them. Requests of one connection
are handled one after another on its reader thread, which is what makes
replies come back in request order. A logged-in connection that goes quiet
parks its socket (chatd/parking.py) and lets the thread end; the next bytes
start a new one, so there is never more than one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from chatd.dialects import Conversation, Dialect, Kick
from chatd.errors import ErrorCode
from chatd.parking import ParkingLot
from chatd.ratelimit import Clock
from chatd.sendqueue import STALL_TIMEOUT, SendQueue
from chatd.services import Services
from chatd.session import Session
from chatd.transport import TlsTransport, Transport

log = logging.getLogger(__name__)

RECV_BYTES = 64 * 1024
# why: a logged-in connection silent this long gives up its reader thread (chatd/parking.py).
PARK_AFTER = 2.0
# why: a request under way when the server stops gets this long to finish and be answered.
REQUEST_GRACE = 10.0
# why: a reader waits this long at a time, so a connection being closed is noticed soon.
READ_SLICE = 0.5
# why: a peer still sending when we close gets this long to read our last frames and hang up.
LINGER_SECONDS = 2.0

# why: a client that vanishes without closing (a laptop put to sleep, a NAT that forgot
# us) would otherwise stay parked and "online" for ever; TCP keepalive probes find it out.
KEEPALIVE_IDLE = 60  # seconds of silence before the first probe
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 6


class Converse(Protocol):
    """How a listener's dialect starts reading one connection."""

    def __call__(
        self, session: Session, kick: Kick, stopping: Callable[[], bool], clock: Clock
    ) -> Conversation: ...


def format_address(address: tuple[str, int]) -> str:
    """`127.0.0.1:7700`, `[::1]:7700`: an address as logs and people write it."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _keep_alive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, option):  # Linux names; elsewhere the system's defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class Connection:
    def __init__(
        self,
        transport: Transport,
        address: tuple[str, int],
        services: Services,
        parking: ParkingLot,
        on_close: Callable[[Connection], None],
        dialect: Dialect,
        converse: Converse,
    ) -> None:
        self.transport = transport
        self.sock = transport.sock
        self.address = address[0]
        self.peer = format_address(address)
        self._services = services
        self._config = services.config
        self._parking = parking
        self._on_close = on_close
        self._dialect = dialect
        self.outbox = SendQueue(
            transport,
            self._config.sendq_bytes,
            dialect.farewell(ErrorCode.SENDQ_EXCEEDED, "you read too slowly; disconnecting"),
            on_stop=self._writer_stopped,
        )
        self.session = Session(
            self.peer, services, self.outbox, dialect, address=self.address, kick=self.close_with
        )
        self._conversation = converse(
            self.session, self.close_with, lambda: self._stopping, services.clock
        )
        self._login_deadline = time.monotonic() + self._config.login_timeout
        # held while received bytes are handled, so a stop can wait for the requests under way
        self._in_request = threading.Lock()
        self._stopping = False
        self._peer_closed = False  # the peer hung up (its end of stream was read)
        # set once the server's shutdown frame is queued: a reader that saw the stop
        # waits for it, or closing first would drop the goodbye
        self._goodbye_queued = threading.Event()
        # held from start until closed: join() waits on it, whichever thread closes
        self._open = threading.Lock()

    def start(self) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _keep_alive(self.sock)
        self._open.acquire()
        self._spawn(self._run)

    def stop_reading(self) -> None:
        """Take no more requests; wait for the one being handled to be handed on."""
        self._stopping = True
        if self._in_request.acquire(timeout=REQUEST_GRACE):
            self._in_request.release()

    def shutdown(self, reason: str) -> None:
        """Say goodbye after every reply still owed, then close."""
        self.stop_reading()
        self.outbox.close(self._dialect.shutdown(reason))
        self._goodbye_queued.set()

    def join(self, timeout: float) -> None:
        if self._open.acquire(timeout=timeout):
            self._open.release()

    def close_with(self, code: ErrorCode, message: str) -> None:
        """Say why, then close: the server ends this connection."""
        log.info("%s: closing: %s", self.peer, code)
        self.outbox.close(self._dialect.farewell(code, message))

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"chatd-conn {self.peer}", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            log.error("%s: no thread for this connection; closing it", self.peer)
            self._close()

    def _resume(self) -> None:
        """Called by the parking lot when a parked socket is readable again."""
        self._spawn(self._serve)

    def _run(self) -> None:
        """The first reader thread: TLS handshake and greeting, then requests."""
        self._serve(greet=True)

    def _serve(self, greet: bool = False) -> None:
        """Read until the connection ends (then close it) or goes idle (then park it)."""
        idle = False
        try:
            if greet:
                if isinstance(self.transport, TlsTransport):
                    self.transport.handshake(self._login_deadline)
                self.sock.settimeout(None)
                greeting = self._dialect.greeting()
                if greeting:
                    self.outbox.put(greeting)
            idle = self._read_loop()
        except OSError as exc:
            log.debug("%s: connection error: %s", self.peer, exc)
        finally:
            if not (idle and self._park()):
                if self._stopping:
                    self._goodbye_queued.wait(REQUEST_GRACE)
                self._close()

    def _park(self) -> bool:
        if self.outbox.closing:
            return False
        try:
            self._parking.park(self.sock, self._resume)
        except (OSError, ValueError, KeyError):  # the socket is closed, or the lot is
            return False
        return True

    def _read_loop(self) -> bool:
        """True when the connection went idle and should be parked; False when it ends.

        Waits for bytes READ_SLICE at a time, so that a connection the server
        is closing (a kick, a stop) is noticed soon: its socket is only shut
        for writing, which does not wake a reader.
        """
        quiet_since = time.monotonic()
        while not self.outbox.closing:
            now = time.monotonic()
            if self.session.user is None and now >= self._login_deadline:
                self.close_with(ErrorCode.IDLE_TIMEOUT, "you did not log in in time")
                return False
            data = self.transport.recv_within(RECV_BYTES, self._read_timeout(now, quiet_since))
            if data is None:
                if self.session.user is not None and time.monotonic() - quiet_since >= PARK_AFTER:
                    return not self.outbox.closing
                continue
            if not data:
                self._peer_closed = True
                return False
            quiet_since = time.monotonic()
            with self._in_request:
                if self._stopping or not self._conversation.received(data):
                    return False
        return False

    def _read_timeout(self, now: float, quiet_since: float) -> float:
        """How long to wait for bytes: READ_SLICE, or less before the login deadline or parking."""
        until = self._login_deadline if self.session.user is None else quiet_since + PARK_AFTER
        return max(0.0, min(READ_SLICE, until - now))

    def _linger(self) -> None:
        """Read away what the peer still sends until it hangs up, for LINGER_SECONDS at most.

        Closing a socket with unread bytes, or shutting its reading side, makes
        the kernel reset the connection when more arrive, and a peer that gets
        the reset may lose the last frames we sent it (the shutdown event, a
        final error). Our side is already shut for writing, so the peer has
        seen the end: the lingering close of web servers.
        """
        if self._peer_closed or self.outbox.overflowed:  # a peer that reads nothing gets nothing
            return
        deadline = time.monotonic() + LINGER_SECONDS
        with contextlib.suppress(OSError):
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(RECV_BYTES):
                    return

    def _writer_stopped(self) -> None:
        """Everything owed is sent: shut our side, and have a reader close the connection.

        Our side only (see _linger); a reader thread sees the queue closing
        within READ_SLICE, and a parked connection is woken for it.
        """
        if self.outbox.overflowed:
            log.warning("%s: send queue exceeded; dropping the connection", self.peer)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        resume = self._parking.unpark(self.sock)
        if resume is not None:
            resume()

    def _close(self) -> None:
        user = self.session.user
        if user is not None:
            self._services.hub.disconnect(user.username, self.session)
        self._services.uploads.discard_owned_by(self.session)
        self.outbox.close()
        self.outbox.join(STALL_TIMEOUT + 1)
        self._linger()
        self.sock.close()
        self._on_close(self)
        self._open.release()
        log.debug("%s: closed", self.peer)
