"""The listening socket and the lifetime of the whole server.

`Server` owns the services (store, hub, hasher, limits), accepts connections
on its own thread and gives each a Connection, within the connection caps.
`stop()` is the clean shutdown: no new requests, every connection told
`shutdown`, the database closed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import chatd.attachments
import chatd.handlers  # noqa: F401  (registers the ops)
from chatd.blobs import BlobStore
from chatd.config import ServerConfig
from chatd.connection import Connection
from chatd.db import default_files_dir, sqlite_files
from chatd.errors import ErrorCode
from chatd.hub import Hub
from chatd.parking import ParkingLot
from chatd.passwords import PasswordHasher
from chatd.permissions import exposure_warning
from chatd.protocol import encode, error_event
from chatd.ratelimit import Clock
from chatd.session import Limits, Services
from chatd.store import Store
from chatd.transport import PlainTransport, TlsTransport, Transport, server_context
from chatd.uploads import Uploads
from chatd.writer import MessageWriter

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
# why: a stopping server waits this long for each connection to say goodbye.
CLOSE_TIMEOUT = 5.0
# why: how soon `chatd user disable`, run in another process, ends a user's sessions.
HOUSEKEEPING_INTERVAL = 2.0
# why: Linux's default net.ipv4.ip_unprivileged_port_start.
FIRST_UNPRIVILEGED_PORT = 1024


class ListenError(OSError):
    """The address cannot be listened on; the message says why in an operator's words."""


def _listen_problem(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}"
    if error.errno == errno.EACCES:
        return (
            f"permission denied to listen on port {port} of {host}: ports below "
            f"{_first_unprivileged_port()} need root or CAP_NET_BIND_SERVICE"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: it is not an address of this machine"
    return f"cannot listen on port {port} of {host}: {error.strerror or error}"


def _first_unprivileged_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return FIRST_UNPRIVILEGED_PORT


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or ListenError saying plainly why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        raise ListenError(_listen_problem(host, port, exc)) from None
    return listener


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where clients connect: the listening socket and the TLS context, if any.

    `chatd serve` opens it before it opens the database, so a taken port or a
    bad certificate is reported first, and before any migration runs.
    """

    listener: socket.socket
    tls: ssl.SSLContext | None

    @classmethod
    def open(cls, config: ServerConfig) -> Endpoint:
        """TlsSetupError for a bad certificate or key; ListenError when the port cannot be had."""
        tls = server_context(config.tls_cert, config.tls_key) if config.tls_cert else None
        return cls(listen(config.host, config.port), tls)

    def close(self) -> None:
        self.listener.close()


def _open_services(config: ServerConfig, clock: Clock) -> Services:
    store = Store(config.db)
    hub = Hub(config.history_size, store.newest_message_id())
    hub.load(store.rooms_with_members())
    return Services(
        config,
        store,
        hub,
        PasswordHasher(config.bcrypt_rounds),
        Limits.from_config(config, clock),
        BlobStore(Path(config.files_dir) if config.files_dir else default_files_dir(config.db)),
        Uploads(),
        MessageWriter(store, hub),
        clock,
    )


class Server:
    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Clock = time.monotonic,
        endpoint: Endpoint | None = None,
    ) -> None:
        """`endpoint`, if given, is the server's to close; else `start` opens one from `config`."""
        self.config = config
        self._endpoint = endpoint
        self._tls: ssl.SSLContext | None = None
        self.services = _open_services(config, clock)
        self._parking = ParkingLot()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        # guards _connections, _per_address and _stopping
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._per_address: Counter[str] = Counter()
        self._stopping = False
        self.address: tuple[str, int] = (config.host, config.port)

    def start(self) -> tuple[str, int]:
        """Start accepting; returns the address actually bound (port 0 picks one)."""
        if self._endpoint is None:
            self._endpoint = Endpoint.open(self.config)
        self._tls = self._endpoint.tls
        self.address = self._endpoint.listener.getsockname()[:2]
        self._warn_about_readable_files()
        self.services.writer.start()
        self._parking.start()
        for target, name in ((self._accept_loop, "accept"), (self._housekeeping, "housekeeping")):
            thread = threading.Thread(target=target, name=f"chatd-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("listening on %s:%d%s", *self.address, " (TLS)" if self._tls else "")
        return self.address

    def _warn_about_readable_files(self) -> None:
        """Files from before chatd made them private are left alone, but the operator is told.

        Checked once the database is open, so that its -wal and -shm exist.
        """
        paths = [*sqlite_files(self.config.db), self.services.blobs.root]
        warning = exposure_warning(paths)
        if warning is not None:
            log.warning("%s", warning)

    def _accept_loop(self) -> None:
        assert self._endpoint is not None
        while True:
            try:
                sock, address = self._endpoint.listener.accept()
            except OSError:
                if self._stopping:
                    return
                log.exception("accept failed")
                continue
            self._admit(sock, address[:2])

    def _admit(self, sock: socket.socket, address: tuple[str, int]) -> None:
        ip = address[0]
        cap = self.config.max_connections_per_ip
        with self._lock:
            if self._stopping:
                sock.close()
                return
            full = len(self._connections) >= self.config.max_connections or (
                cap and self._per_address[ip] >= cap
            )
            if not full:
                connection = Connection(
                    self._transport(sock), address, self.services, self._parking, self._forget
                )
                self._connections.add(connection)
                self._per_address[ip] += 1
        if full:
            self._refuse(sock, ip)
            return
        log.debug("%s: connected", connection.peer)
        connection.start()

    def _transport(self, sock: socket.socket) -> Transport:
        return PlainTransport(sock) if self._tls is None else TlsTransport(sock, self._tls)

    def _refuse(self, sock: socket.socket, ip: str) -> None:
        """Over a connection cap: say so if the socket takes it at once, and close."""
        log.warning("%s: refused: too many connections", ip)
        if self._tls is None:
            event = error_event(ErrorCode.TOO_MANY_CONNECTIONS, "too many connections; try later")
            with contextlib.suppress(OSError):
                sock.send(encode(event), socket.MSG_DONTWAIT)
        sock.close()

    def _forget(self, connection: Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._per_address[connection.address] -= 1
            if self._per_address[connection.address] <= 0:
                del self._per_address[connection.address]

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _housekeeping(self) -> None:
        """Expire idle uploads; close the sessions of accounts disabled from the command line.

        Also notices messages added by `chatd import` while the server runs, so
        joins do not answer with kept history that misses them.
        """
        services = self.services
        hub = services.hub
        while not self._stopped.wait(HOUSEKEEPING_INTERVAL):
            services.uploads.expire(services.clock(), self.config.upload_timeout)
            try:
                disabled = services.store.disabled_usernames()
                newest = services.store.newest_message_id()
            except Exception:
                log.exception("housekeeping failed")
                continue
            with hub.delivery_lock:
                if hub.check_newest(newest):
                    log.info("messages were added from outside; kept history reloads on join")
            for name in disabled:
                for peer in hub.peers_of(name):
                    peer.kick(ErrorCode.ACCOUNT_DISABLED, "this account has been disabled")

    def stop(self, reason: str = "the server is shutting down") -> None:
        """Clean stop: every connection gets `shutdown`; acknowledged messages are on disk."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            connections = list(self._connections)
        self._stopped.set()
        if self._endpoint is not None:
            with contextlib.suppress(OSError):
                self._endpoint.listener.shutdown(socket.SHUT_RDWR)
            self._endpoint.close()
        for thread in self._threads:
            thread.join(CLOSE_TIMEOUT)
        for connection in connections:
            connection.stop_reading()
        self.services.writer.stop(CLOSE_TIMEOUT)
        for connection in connections:
            connection.shutdown(reason)
        for connection in connections:
            connection.join(CLOSE_TIMEOUT)
        self._parking.stop(CLOSE_TIMEOUT)
        self.services.store.close()
        log.info("stopped")
