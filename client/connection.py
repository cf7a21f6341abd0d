"""One TCP connection to chatd, read and written with the server's own codec.

Blocking, with a deadline on every read: `select` waits, so the socket's own
timeout only bounds writes and one thread may write while another reads.
Reconnect timing (`Backoff`) lives here too, as pure arithmetic.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from chatd.protocol import (
    MAX_SERVER_FRAME_BYTES,
    FrameDecoder,
    FrameTooLarge,
    encode,
    parse_json_line,
)
from chatd.transport import PlainTransport, TlsTransport, Transport

log = logging.getLogger(__name__)

Frame = dict[str, Any]
IO_TIMEOUT = 10.0


# errno values in words; anything else gets the system's own text, lower-cased.
_ERRNO_TEXT = {
    errno.ECONNREFUSED: "connection refused (is chatd running?)",
    errno.ECONNRESET: "the connection was reset",
    errno.ECONNABORTED: "the connection was aborted",
    errno.EPIPE: "the connection was closed",
    errno.ETIMEDOUT: "no answer in time (timed out)",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ENETUNREACH: "the network is unreachable",
    errno.EADDRNOTAVAIL: "the address is not available here",
}
_LOOKUP_TEXT = {
    socket.EAI_NONAME: "unknown host",
    socket.EAI_AGAIN: "the host name could not be looked up",
}


def show_address(address: tuple[str, int]) -> str:
    """`host:port` as --server takes it: an IPv6 address in brackets, `[::1]:7700`."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def network_error_text(exc: OSError) -> str:
    """What went wrong connecting or talking, in words (never `[Errno 111] ...`)."""
    if isinstance(exc, socket.gaierror):
        return _LOOKUP_TEXT.get(exc.errno or 0, "the host name could not be looked up")
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return _ERRNO_TEXT[errno.ETIMEDOUT]
    if exc.errno in _ERRNO_TEXT:
        return _ERRNO_TEXT[exc.errno]
    if exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


class ConnectionLost(Exception):
    """The connection ended or stopped answering."""


class UntrustedServer(ConnectionError):
    """TLS: the server's certificate did not verify."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential delays between reconnect attempts, with jitter so clients spread out."""

    first: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: float = 0.5) -> float:
        """Seconds before attempt number `attempt` (0-based); `rand` is uniform in [0, 1)."""
        base = min(self.cap, self.first * self.factor ** min(attempt, 64))
        return base * (1 + self.jitter * (2 * rand - 1))


class Connection:
    """One TCP connection: a socket and the shared codec; every read has a deadline."""

    def __init__(self, sock: socket.socket, transport: Transport | None = None) -> None:
        self.sock = sock
        self._transport = transport or PlainTransport(sock)
        self._decoder = FrameDecoder(MAX_SERVER_FRAME_BYTES)
        self._frames: deque[Frame] = deque()

    @classmethod
    def open(
        cls,
        address: tuple[str, int],
        timeout: float = IO_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> Connection:
        """Connect (and verify the server's certificate, with `tls`); OSError on failure."""
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if tls is None:
            return cls(sock)
        transport = TlsTransport(sock, tls, server_hostname=address[0])
        try:
            transport.handshake(time.monotonic() + timeout)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise UntrustedServer(
                f"the server's TLS certificate is not trusted ({exc.verify_message}); "
                "for a private CA use --ca FILE"
            ) from None
        except (OSError, ssl.SSLError):
            sock.close()
            raise
        sock.settimeout(timeout)
        return cls(sock, transport)

    def welcome(self) -> Frame:
        """The server's first frame, which must be `welcome`; ConnectionLost otherwise."""
        frame = self.read(IO_TIMEOUT)
        if frame is None or frame.get("event") != "welcome":
            raise ConnectionLost("the server did not say welcome")
        return frame

    def send(self, frame: Frame) -> None:
        self.sock.sendall(self._transport.seal(encode(frame)))

    def read(self, timeout: float) -> Frame | None:
        """The next frame, None when `timeout` passes first; ConnectionLost at the end."""
        deadline = time.monotonic() + timeout
        while not self._frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                if not self._transport.pending():
                    readable, _, _ = select.select([self.sock], [], [], remaining)
                    if not readable:
                        continue
                data = self._transport.recv(65536)
            except OSError as exc:
                raise ConnectionLost(network_error_text(exc)) from None
            except ValueError:  # the socket was closed
                raise ConnectionLost("the connection was closed") from None
            if not data:
                raise ConnectionLost("the server closed the connection")
            try:
                lines = list(self._decoder.feed(data))
            except FrameTooLarge:
                raise ConnectionLost("the server sent an oversized frame") from None
            for line in lines:
                try:
                    frame = parse_json_line(line)
                except ValueError:
                    log.warning("ignoring a frame that is not JSON")
                    continue
                if isinstance(frame, dict):
                    self._frames.append(frame)
        return self._frames.popleft()

    def call(self, frame: Frame, events: list[Frame], timeout: float = IO_TIMEOUT) -> Frame:
        """Send a request and read until its reply, keeping events that come first."""
        self.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            got = self.read(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise ConnectionLost(f"no reply to {frame['op']} in time")
            if "event" in got:
                events.append(got)
            elif got.get("id") in (frame["id"], None):
                return got

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
