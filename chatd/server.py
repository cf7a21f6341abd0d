"""The listening socket and the lifetime of the whole server.

`Server` owns the services (store, hub, hasher), accepts connections on its
own thread and gives each a Connection. `stop()` is the clean shutdown: no new
requests, every connection told `shutdown`, the database closed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

import chatd.handlers  # noqa: F401  (registers the ops)
from chatd.config import ServerConfig
from chatd.connection import Connection
from chatd.hub import Hub
from chatd.passwords import PasswordHasher
from chatd.session import Services
from chatd.store import Store

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
# why: a stopping server waits this long for each connection to say goodbye.
CLOSE_TIMEOUT = 5.0


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        store = Store(config.db)
        hub = Hub()
        hub.load(store.rooms_with_members())
        self.services = Services(config, store, hub, PasswordHasher(config.bcrypt_rounds))
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        # guards _connections and _stopping
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._stopping = False
        self.address: tuple[str, int] = (config.host, config.port)

    def start(self) -> tuple[str, int]:
        """Bind and start accepting; returns the address actually bound (port 0 picks one)."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.config.host, self.config.port))
        listener.listen(LISTEN_BACKLOG)
        self._listener = listener
        self.address = listener.getsockname()[:2]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="chatd-accept", daemon=True
        )
        self._accept_thread.start()
        log.info("listening on %s:%d", *self.address)
        return self.address

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, address = self._listener.accept()
            except OSError:
                if self._stopping:
                    return
                log.exception("accept failed")
                continue
            peer = f"{address[0]}:{address[1]}"
            connection = Connection(sock, peer, self.services, self._forget)
            with self._lock:
                if self._stopping:
                    sock.close()
                    return
                self._connections.add(connection)
            log.debug("%s: connected", peer)
            connection.start()

    def _forget(self, connection: Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def stop(self, reason: str = "the server is shutting down") -> None:
        """Clean stop: every connection gets `shutdown`; acknowledged messages are on disk."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            connections = list(self._connections)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(CLOSE_TIMEOUT)
        for connection in connections:
            connection.shutdown(reason)
        for connection in connections:
            connection.join(CLOSE_TIMEOUT)
        self.services.store.close()
        log.info("stopped")
