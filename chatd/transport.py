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
# why: matches "BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY", "BEGIN ENCRYPTED PRIVATE KEY"...
PEM_KEY = "PRIVATE KEY-----"


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


class TlsSetupError(Exception):
    """A certificate or key file chatd cannot serve TLS with; the message names the file."""


def _read_pem(flag: str, path: str) -> str:
    try:
        with open(path, "rb") as stream:
            return stream.read().decode("latin-1")
    except FileNotFoundError:
        raise TlsSetupError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise TlsSetupError(f"{flag} {path}: it is a directory") from None
    except OSError as exc:
        raise TlsSetupError(f"{flag} {path}: cannot be read: {exc.strerror or exc}") from None


def _refuse_passphrase() -> str:
    raise TlsSetupError("the key is encrypted with a passphrase")


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context; TlsSetupError names the bad file and what is wrong with it.

    OpenSSL alone says "PEM lib" whichever file is wrong, so each file is
    checked on its own first: a certificate and a key swapped, a missing or
    unreadable file, a key with a passphrase (OpenSSL would prompt for it on
    the terminal), and a key that belongs to another certificate.
    """
    cert_pem, key_pem = _read_pem("--tls-cert", cert_file), _read_pem("--tls-key", key_file)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert_pem)
    except ssl.SSLError:
        what = "a private key, not a certificate" if PEM_KEY in cert_pem else "no PEM certificate"
        raise TlsSetupError(f"--tls-cert {cert_file}: it holds {what}") from None
    if PEM_KEY not in key_pem:
        raise TlsSetupError(f"--tls-key {key_file}: it holds no PEM private key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file, password=_refuse_passphrase)
    except TlsSetupError as exc:
        raise TlsSetupError(f"--tls-key {key_file}: {exc}; chatd needs it unencrypted") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsSetupError(
                f"--tls-key {key_file} does not match the certificate in --tls-cert {cert_file}"
            ) from None
        raise TlsSetupError(f"--tls-key {key_file}: not a usable private key ({exc})") from None
    return context
