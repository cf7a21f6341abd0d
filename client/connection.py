"""One TCP connection to chatd, read and written with the server's own codec.

Blocking, with a deadline on every read: `select` waits, so the socket's own
timeout only bounds writes and one thread may write while another reads.
Reconnect timing (`Backoff`) lives here too, as pure arithmetic, and so does
the wording of what goes wrong on the way: network errors in words, TLS on
one side only, a certificate that does not verify and why.
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

from chatd.events import EventName
from chatd.protocol import (
    MAX_SERVER_FRAME_BYTES,
    FrameDecoder,
    FrameTooLarge,
    encode,
    parse_json_line,
)
from chatd.transport import PlainTransport, TlsTransport, Transport
from client.render import sanitize

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


# why: chatd greets at once; a server silent this long may be a TLS server awaiting our hello
TLS_PROBE_AFTER = 1.0
# Blank lines: chatd ignores them, a TLS server cannot read them as a record and hangs up.
_TLS_PROBE = b"\n" * 8
_TLS_ALERT = b"\x15\x03"  # the start of a TLS alert record, all a TLS server might answer
# OpenSSL's reasons for a handshake answered with bytes that are not TLS at all
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
# X509_V_ERR_* codes: the certificate is for another name; no trusted CA signed it
_WRONG_NAME = frozenset({62, 64})
_UNKNOWN_ISSUER = frozenset({2, 18, 19, 20, 21})
_NAME_KINDS = ("DNS", "IP Address")  # the subjectAltName entries a server is reached by


def show_address(address: tuple[str, int]) -> str:
    """`host:port` as --server takes it: an IPv6 address in brackets, `[::1]:7700`."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def network_error_text(exc: OSError) -> str:
    """What went wrong connecting or talking, in words (never `[Errno 111] ...`)."""
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "unknown reason").lower().replace("_", " ")
        return f"the TLS handshake failed ({reason})"
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


class WrongTransport(ConnectionLost):
    """TLS on one side only: `server_tls` says whether it is the server's side."""

    def __init__(self, *, server_tls: bool) -> None:
        super().__init__(
            "this looks like a TLS server" if server_tls else "the server does not speak TLS"
        )
        self.server_tls = server_tls


class UntrustedServer(ConnectionError):
    """TLS: the server's certificate did not verify; the message says why.

    `unknown_issuer`: no CA we trust signed it (a private CA would explain
    that). `names`: it is valid, but for these names and not the one we used.
    """

    def __init__(
        self, message: str, *, unknown_issuer: bool = False, names: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.unknown_issuer = unknown_issuer
        self.names = names


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
        self._first_bytes = b""  # what the server said first, to recognise a TLS alert

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
            raise _untrusted(exc, address, tls, timeout) from None
        except ssl.SSLError as exc:
            sock.close()
            if exc.reason in _NOT_TLS:
                raise WrongTransport(server_tls=False) from None
            raise
        except OSError:
            sock.close()
            raise
        sock.settimeout(timeout)
        return cls(sock, transport)

    def welcome(self) -> Frame:
        """The server's first frame, which must be `welcome`; ConnectionLost otherwise.

        Over plain TCP, a server still silent after TLS_PROBE_AFTER is sent a few
        blank lines: chatd ignores them, while a TLS server, which waits for the
        client to speak first, takes them for a broken handshake and hangs up.
        So a missing --tls is named (WrongTransport) in a second, not reported
        as a puzzling silence after IO_TIMEOUT.
        """
        frame = self.read(TLS_PROBE_AFTER)
        if frame is None and isinstance(self._transport, PlainTransport):
            with contextlib.suppress(OSError):
                self.sock.sendall(_TLS_PROBE)
            try:
                frame = self.read(IO_TIMEOUT - TLS_PROBE_AFTER)
            except ConnectionLost:
                if self._first_bytes in (b"", _TLS_ALERT):
                    raise WrongTransport(server_tls=True) from None
                raise
        if frame is None or frame.get("event") != EventName.WELCOME:
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
            if len(self._first_bytes) < len(_TLS_ALERT):
                self._first_bytes = (self._first_bytes + data)[: len(_TLS_ALERT)]
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


def _untrusted(
    exc: ssl.SSLCertVerificationError,
    address: tuple[str, int],
    tls: ssl.SSLContext,
    timeout: float,
) -> UntrustedServer:
    """Why the certificate failed, in words; for a wrong name, the names it is for."""
    host = address[0]
    if exc.verify_code in _WRONG_NAME:
        names = _certificate_names(address, tls, timeout)
        if names:
            return UntrustedServer(
                f"the server's TLS certificate is for {', '.join(names)}, not {host}", names=names
            )
        return UntrustedServer(f"the server's TLS certificate is for another name, not {host}")
    return UntrustedServer(
        f"the server's TLS certificate is not trusted ({exc.verify_message})",
        unknown_issuer=exc.verify_code in _UNKNOWN_ISSUER,
    )


def _certificate_names(
    address: tuple[str, int], tls: ssl.SSLContext, timeout: float
) -> tuple[str, ...]:
    """The names the server's certificate is for; () when they cannot be learnt.

    A second handshake, only to word the error: it checks the chain against
    the same CAs but not the name, and nothing is sent over it.
    """
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    authorities = tls.get_ca_certs(binary_form=True)
    try:
        if authorities:
            probe.load_verify_locations(cadata=b"".join(authorities))
        else:
            probe.load_default_certs()
        with (
            socket.create_connection(address, timeout=timeout) as raw,
            probe.wrap_socket(raw, server_hostname=address[0]) as wrapped,
        ):
            cert = wrapped.getpeercert() or {}
    except (OSError, ValueError):
        return ()
    alt_names: Any = cert.get("subjectAltName", ())
    names = [value for kind, value in alt_names if kind in _NAME_KINDS]
    if not names:  # an old-style certificate: its subject's common name
        subject: Any = cert.get("subject", ())
        names = [value for part in subject for key, value in part if key == "commonName"]
    return tuple(sanitize(name) for name in names)
