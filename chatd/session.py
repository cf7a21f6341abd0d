"""One client connection as handlers see it: who is logged in, and where its frames go.

The socket itself lives in connection.py; a Session only queues bytes, which
never blocks, so handlers and the hub can deliver while holding order locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from chatd.config import ServerConfig
from chatd.hub import Hub
from chatd.passwords import PasswordHasher
from chatd.protocol import encode
from chatd.store import Store, UserRecord


@dataclass(frozen=True, slots=True)
class Services:
    """What every handler may use; one per server."""

    config: ServerConfig
    store: Store
    hub: Hub
    hasher: PasswordHasher


class Outbox(Protocol):
    def put(self, data: bytes) -> bool: ...


class Session:
    def __init__(self, peer: str, services: Services, outbox: Outbox) -> None:
        self.peer = peer
        self.services = services
        self._outbox = outbox
        self.user: UserRecord | None = None
        self.quitting = False

    def deliver(self, data: bytes) -> None:
        self._outbox.put(data)

    def reply(self, frame: dict[str, Any]) -> None:
        self._outbox.put(encode(frame))

    def __repr__(self) -> str:
        return f"<Session {self.peer} {self.user.username if self.user else '-'}>"
