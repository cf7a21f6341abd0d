"""Bytes to and from a client's socket, in the clear or under TLS.

A connection reads on one thread and writes on another. An `ssl.SSLSocket`
may not be used from two threads at once (one OpenSSL object underneath), so
TLS here runs OpenSSL over memory buffers: both threads go through one small
lock for the cryptography only, while raw socket reads and writes stay on
their own threads and never happen under that lock.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
import time
from typing import Protocol

RAW_RECV_BYTES = 64 * 1024


class Transport(Protocol):
    sock: socket.socket

    def recv(self, size: int) -> bytes:
        """Plain bytes from the peer, blocking (the socket's timeout applies); b"" at the end."""
        ...

    def recv_within(self, size: int, timeout: float) -> bytes | None:
        """As recv, but None when no plain bytes came within `timeout` seconds."""
        ...

    def seal(self, data: bytes) -> bytes:
        """The bytes to put on the wire so the peer reads `data` (may be empty)."""
        ...

    def pending(self) -> int:
        """Plain bytes already received and decoded, waiting to be read."""
        ...


class PlainTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._receive_timeout: float | None = None

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def recv_within(self, size: int, timeout: float) -> bytes | None:
        """One recv call with the kernel's receive timeout (SO_RCVTIMEO).

        Python's own socket timeout would poll before every recv, and a
        non-blocking recv followed by poll and recv again takes three system
        calls where this takes one. The socket must be in blocking mode (no
        Python timeout); while it waits (PARK_AFTER at most) it holds the
        receive buffer, which a parked connection does not.
        """
        if timeout != self._receive_timeout:
            seconds = max(timeout, 0.001)
            whole = int(seconds)
            timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self._receive_timeout = timeout
        try:
            return self.sock.recv(size)
        except BlockingIOError:
            return None

    def seal(self, data: bytes) -> bytes:
        return data

    def pending(self) -> int:
        return 0


class TlsTransport:
    """TLS over memory BIOs (server side, or client side with `server_hostname`).

    Call `handshake` before anything else.
    """

    def __init__(
        self, sock: socket.socket, context: ssl.SSLContext, *, server_hostname: str | None = None
    ) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_hostname is None,
            server_hostname=server_hostname,
        )
        # guards the SSLObject and both BIOs; never held during socket I/O
        self._lock = threading.Lock()

    def handshake(self, deadline: float) -> None:
        """Complete the TLS handshake by `deadline` (time.monotonic); OSError otherwise."""
        while True:
            with self._lock:
                try:
                    self._tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                wire = self._outgoing.read()
            self._send_blocking(wire, deadline)
            if done:
                return
            self._feed(deadline)

    def _send_blocking(self, wire: bytes, deadline: float) -> None:
        if wire:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            self.sock.sendall(wire)

    def _feed(self, deadline: float | None) -> None:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("TLS handshake timed out")
            self.sock.settimeout(remaining)
        self._put_raw(self.sock.recv(RAW_RECV_BYTES))

    def _put_raw(self, raw: bytes) -> None:
        with self._lock:
            if raw:
                self._incoming.write(raw)
            else:
                self._incoming.write_eof()

    def _read(self, size: int) -> bytes | None:
        """Decrypted bytes, b"" at the end, None while more bytes from the wire are needed."""
        with self._lock:
            try:
                return self._tls.read(size)
            except ssl.SSLWantReadError:
                return None
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def recv(self, size: int) -> bytes:
        while (data := self._read(size)) is None:
            self._feed(None)
        return data

    def recv_within(self, size: int, timeout: float) -> bytes | None:
        """As recv, waiting at most `timeout` in all, however slowly a record trickles in."""
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while (data := self._read(size)) is None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not poller.poll(max(wait, 0.001) * 1000):
                return None
            self._put_raw(self.sock.recv(RAW_RECV_BYTES))
        return data

    def pending(self) -> int:
        """Decrypted bytes waiting: readable now, though the socket may not be."""
        with self._lock:
            return self._tls.pending()

    def seal(self, data: bytes) -> bytes:
        with self._lock:
            if data:
                self._tls.write(data)
            return self._outgoing.read()


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context; ssl.SSLError or OSError names a bad file."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
