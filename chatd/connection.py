"""One client's socket: a reader thread that decodes and dispatches, and a writer (SendQueue).

Requests of one connection are handled one after another on its reader
thread, which is what makes replies come back in request order.
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
# why: a request under way when the server stops gets this long to finish and be answered.
REQUEST_GRACE = 10.0
# why: a client may recover from an occasional malformed frame, one per this many seconds.
BAD_FRAME_REFILL_SECONDS = 10.0
# Replies that mean the client broke the protocol, as opposed to asking for something refused.
PROTOCOL_VIOLATIONS = frozenset({ErrorCode.BAD_REQUEST.value, ErrorCode.UNKNOWN_OP.value})


class Connection:
    def __init__(
        self,
        transport: Transport,
        address: tuple[str, int],
        services: Services,
        on_close: Callable[[Connection], None],
    ) -> None:
        self.transport = transport
        self.sock = transport.sock
        self.address = address[0]
        self.peer = f"{address[0]}:{address[1]}"
        self._config = services.config
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
        self._login_deadline = time.monotonic() + self._config.login_timeout
        # guards _stopping and _in_request, so a stop waits for the request under way
        self._state = threading.Condition(threading.Lock())
        self._stopping = False
        self._in_request = False
        self._thread = threading.Thread(
            target=self._run, name=f"chatd-conn {self.peer}", daemon=True
        )

    def start(self) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._thread.start()

    def stop_reading(self) -> None:
        """Take no more requests; wait for the one being handled to be handed on."""
        with self._state:
            self._stopping = True
            self._state.wait_for(lambda: not self._in_request, REQUEST_GRACE)

    def shutdown(self, reason: str) -> None:
        """Say goodbye after every reply still owed, then close."""
        self.stop_reading()
        self.outbox.close(encode({"event": "shutdown", "reason": reason}))

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

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

    def _run(self) -> None:
        try:
            if isinstance(self.transport, TlsTransport):
                self.transport.handshake(self._login_deadline)
            self.outbox.put(encode(self._welcome()))
            self._read_loop()
        except OSError as exc:
            log.debug("%s: connection error: %s", self.peer, exc)
        finally:
            self._close()

    def _read_loop(self) -> None:
        decoder = FrameDecoder(self._config.max_frame)
        while not self.outbox.closing:
            if not self._set_read_timeout():
                self.close_with(ErrorCode.IDLE_TIMEOUT, "you did not log in in time")
                return
            try:
                data = self.transport.recv(RECV_BYTES)
            except TimeoutError:
                continue
            if not data:
                return
            try:
                for line in decoder.feed(data):
                    if not self._handle(line):
                        return
            except FrameTooLarge:
                self.close_with(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"a frame may hold at most {self._config.max_frame} bytes",
                )
                return

    def _set_read_timeout(self) -> bool:
        """Bound the wait by the login deadline before login; False once it has passed."""
        if self.session.user is not None:
            if self.sock.gettimeout() is not None:
                self.sock.settimeout(None)
            return True
        remaining = self._login_deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        return True

    def _handle(self, line: bytes) -> bool:
        """Answer one frame; False when the connection should stop reading."""
        with self._state:
            if self._stopping:
                return False
            self._in_request = True
        try:
            try:
                reply = dispatch(self.session, parse_request(line))
            except ChatError as error:
                reply = error_reply(None, error)
                self.session.reply(reply)
        finally:
            with self._state:
                self._in_request = False
                self._state.notify_all()
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
        log.debug("%s: closed", self.peer)
