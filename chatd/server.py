"""The server's lifetime: its services, its listeners, and every connection they accept.

`Server` owns the services (store, hub, writer, limits), accepts on each
listener with its own thread and gives each connection a Connection speaking
that listener's dialect, within the connection caps. `stop()` is the clean
shutdown: no new requests, every connection told `shutdown`, the database
closed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from chatd.config import ServerConfig, without_password
from chatd.connection import Connection, format_address
from chatd.db import sqlite_files
from chatd.errors import ErrorCode
from chatd.listeners import Listener, open_listeners
from chatd.parking import ParkingLot
from chatd.permissions import exposure_warning
from chatd.ratelimit import Clock
from chatd.services import Services
from chatd.transport import PlainTransport, TlsTransport, Transport

log = logging.getLogger(__name__)

# why: a stopping server waits this long for each connection to say goodbye.
CLOSE_TIMEOUT = 5.0
# why: how soon `chatd user disable`, run in another process, ends a user's sessions.
HOUSEKEEPING_INTERVAL = 2.0


class Server:
    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Clock = time.monotonic,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        """`listeners`, if given, are the server's to close; else `start` opens them."""
        self.config = config
        self._listeners = list(listeners) if listeners is not None else None
        self.services = Services.open(config, clock)
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
        """Start accepting; returns the first listener's address (port 0 picks one)."""
        if self._listeners is None:
            self._listeners = open_listeners(self.config)
        self.address = self._listeners[0].address
        self._warn_about_readable_files()
        services = self.services
        services.writer.start()
        services.bus.start(services.sequencer, services.hub)
        # why: also on a single server: another one on the same database (a mistake) then
        # delays its clients' messages by a second or two instead of stalling them for good.
        self._thread(functools.partial(services.sequencer.repair_until, self._stopped), "repair")
        if services.clustered:
            bus = without_password(self.config.bus)
            log.info("node %s of a cluster on %s", self.config.node_name, bus)
        self._parking.start()
        for listener in self._listeners:
            self._thread(functools.partial(self._accept_loop, listener), "accept")
        self._thread(self._housekeeping, "housekeeping")
        for listener in self._listeners:
            name = f"{listener.name} listening" if listener.name else "listening"
            tls = " (TLS)" if listener.tls else ""
            log.info("%s on %s%s", name, format_address(listener.address), tls)
        return self.address

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=f"chatd-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _warn_about_readable_files(self) -> None:
        """Files from before chatd made them private are left alone, but the operator is told.

        Checked once the database is open, so that its -wal and -shm exist.
        """
        paths = [*sqlite_files(self.config.db), self.services.blobs.root]
        warning = exposure_warning(paths)
        if warning is not None:
            log.warning("%s", warning)

    def _accept_loop(self, listener: Listener) -> None:
        while True:
            try:
                sock, address = listener.sock.accept()
            except OSError:
                if self._stopping:
                    return
                log.exception("accept failed")
                continue
            self._admit(listener, sock, address[:2])

    def _admit(self, listener: Listener, sock: socket.socket, address: tuple[str, int]) -> None:
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
                    self._transport(listener, sock),
                    address,
                    self.services,
                    self._parking,
                    self._forget,
                    listener.dialect,
                    listener.converse,
                )
                self._connections.add(connection)
                self._per_address[ip] += 1
        if full:
            self._refuse(listener, sock, ip)
            return
        log.debug("%s: connected", connection.peer)
        connection.start()

    @staticmethod
    def _transport(listener: Listener, sock: socket.socket) -> Transport:
        return PlainTransport(sock) if listener.tls is None else TlsTransport(sock, listener.tls)

    @staticmethod
    def _refuse(listener: Listener, sock: socket.socket, ip: str) -> None:
        """Over a connection cap: say so if the socket takes it at once, and close."""
        log.warning("%s: refused: too many connections", ip)
        if listener.tls is None:
            farewell = listener.dialect.farewell(
                ErrorCode.TOO_MANY_CONNECTIONS, "too many connections; try later"
            )
            with contextlib.suppress(OSError):
                sock.send(farewell, socket.MSG_DONTWAIT)
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
                head = services.store.log_head()  # after newest: no log message is newer
            except Exception:
                log.exception("housekeeping failed")
                continue
            check = functools.partial(self._check_outside_writes, newest)
            services.sequencer.when_delivered_upto(head, check)
            for name in disabled:
                for peer in hub.peers_of(name):
                    peer.kick(ErrorCode.ACCOUNT_DISABLED, "this account has been disabled")

    def _check_outside_writes(self, newest: int) -> None:
        """Once the log is delivered up to the head read after `newest`: no batch looks outside."""
        if self.services.hub.check_newest(newest):
            log.info("messages were added from outside; kept history reloads on join")

    def stop(self, reason: str = "the server is shutting down") -> None:
        """Clean stop: every connection gets `shutdown`; acknowledged messages are on disk."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            connections = list(self._connections)
        self._stopped.set()
        self.services.sequencer.wake()
        for listener in self._listeners or ():
            with contextlib.suppress(OSError):
                listener.sock.shutdown(socket.SHUT_RDWR)
            listener.close()
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
        self.services.bus.stop()
        self.services.store.close()
        log.info("stopped")
