"""One client's socket: a reader thread that decodes and dispatches, and a writer (SendQueue).

Requests of one connection are handled one after another on its reader
thread, which is what makes replies come back in request order. A logged-in
connection that goes quiet parks its socket (chatd/parking.py) and lets the
thread end; the next bytes start a new one, so there is never more than one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from chatd import __version__
from chatd.commands import dispatch
from chatd.errors import ChatError, ErrorCode
from chatd.parking import ParkingLot
from chatd.protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameTooLarge,
    encode,
    error_event,
    error_reply,
    parse_request,
)
from chatd.ratelimit import TokenBucket
from chatd.sendqueue import STALL_TIMEOUT, SendQueue
from chatd.session import Services, Session
from chatd.transport import TlsTransport, Transport

log = logging.getLogger(__name__)

RECV_BYTES = 64 * 1024
# why: a logged-in connection silent this long gives up its reader thread (chatd/parking.py).
PARK_AFTER = 2.0
# why: a request under way when the server stops gets this long to finish and be answered.
REQUEST_GRACE = 10.0
# why: a client may recover from an occasional malformed frame, one per this many seconds.
BAD_FRAME_REFILL_SECONDS = 10.0
# Replies that mean the client broke the protocol, as opposed to asking for something refused.
PROTOCOL_VIOLATIONS = frozenset({ErrorCode.BAD_REQUEST.value, ErrorCode.UNKNOWN_OP.value})


# why: a client that vanishes without closing (a laptop put to sleep, a NAT that forgot
# us) would otherwise stay parked and "online" for ever; TCP keepalive probes find it out.
KEEPALIVE_IDLE = 60  # seconds of silence before the first probe
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 6


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
    ) -> None:
        self.transport = transport
        self.sock = transport.sock
        self.address = address[0]
        self.peer = f"{address[0]}:{address[1]}"
        self._config = services.config
        self._parking = parking
        self._on_close = on_close
        self.outbox = SendQueue(
            transport,
            self._config.sendq_bytes,
            encode(error_event(ErrorCode.SENDQ_EXCEEDED, "you read too slowly; disconnecting")),
            on_stop=self._writer_stopped,
        )
        self.session = Session(
            self.peer, services, self.outbox, address=self.address, kick=self.close_with
        )
        limit = self._config.max_bad_frames
        self._bad_frames = TokenBucket(
            1 / BAD_FRAME_REFILL_SECONDS if limit else 0, limit, services.clock
        )
        self._decoder = FrameDecoder(self._config.max_frame)
        self._login_deadline = time.monotonic() + self._config.login_timeout
        # held while a request is handled, so a stop can wait for the one under way
        self._in_request = threading.Lock()
        self._stopping = False
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
        self.outbox.close(encode({"event": "shutdown", "reason": reason}))

    def join(self, timeout: float) -> None:
        if self._open.acquire(timeout=timeout):
            self._open.release()

    def close_with(self, code: ErrorCode, message: str) -> None:
        """Send the error event, then close: the server ends this connection."""
        log.info("%s: closing: %s", self.peer, code)
        self.outbox.close(encode(error_event(code, message)))

    def _welcome(self) -> dict[str, Any]:
        return {
            "event": "welcome",
            "server": "chatd",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "history_size": self._config.history_size,
            "max_file_bytes": self._config.max_file_bytes,
        }

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
        """The first reader thread: TLS handshake and welcome, then requests."""
        self._serve(greet=True)

    def _serve(self, greet: bool = False) -> None:
        """Read until the connection ends (then close it) or goes idle (then park it)."""
        idle = False
        try:
            if greet:
                if isinstance(self.transport, TlsTransport):
                    self.transport.handshake(self._login_deadline)
                self.sock.settimeout(None)
                self.outbox.put(encode(self._welcome()))
            idle = self._read_loop()
        except OSError as exc:
            log.debug("%s: connection error: %s", self.peer, exc)
        finally:
            if not (idle and self._park()):
                self._close()

    def _park(self) -> bool:
        try:
            self._parking.park(self.sock, self._resume)
        except (OSError, ValueError, KeyError):  # the socket is closed, or the lot is
            return False
        return True

    def _read_loop(self) -> bool:
        """True when the connection went idle and should be parked; False when it ends."""
        while not self.outbox.closing:
            if self.session.user is None and time.monotonic() >= self._login_deadline:
                self.close_with(ErrorCode.IDLE_TIMEOUT, "you did not log in in time")
                return False
            data = self.transport.recv_within(RECV_BYTES, self._read_timeout())
            if data is None:
                if self.session.user is not None:
                    return True
                continue
            if not data:
                return False
            try:
                for line in self._decoder.feed(data):
                    if not self._handle(line):
                        return False
            except FrameTooLarge:
                self.close_with(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"a frame may hold at most {self._config.max_frame} bytes",
                )
                return False
        return False

    def _read_timeout(self) -> float:
        """How long to wait for bytes: until the login deadline, then PARK_AFTER."""
        if self.session.user is None:
            return max(0.0, self._login_deadline - time.monotonic())
        return PARK_AFTER

    def _handle(self, line: bytes) -> bool:
        """Answer one frame; False when the connection should stop reading."""
        with self._in_request:
            if self._stopping:
                return False
            try:
                reply = dispatch(self.session, parse_request(line))
            except ChatError as error:
                reply = error_reply(None, error)
                self.session.reply(reply)
        if reply and reply.get("error") in PROTOCOL_VIOLATIONS and self._bad_frames.take():
            self.close_with(ErrorCode.TOO_MANY_ERRORS, "too many malformed requests")
            return False
        return not self.session.quitting and not self.outbox.closing

    def _writer_stopped(self) -> None:
        if self.outbox.overflowed:
            log.warning("%s: send queue exceeded; dropping the connection", self.peer)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _close(self) -> None:
        user = self.session.user
        if user is not None:
            self.session.services.hub.disconnect(user.username, self.session)
        self.session.services.uploads.discard_owned_by(self.session)
        self.outbox.close()
        self.outbox.join(STALL_TIMEOUT + 1)
        self.sock.close()
        self._on_close(self)
        self._open.release()
        log.debug("%s: closed", self.peer)
