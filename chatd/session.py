"""One client connection as handlers see it: who is logged in, and where its frames go.

The socket itself lives in connection.py; a Session only queues bytes, which
never blocks, so the writer and handlers can deliver while holding the delivery lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chatd.blobs import BlobStore
from chatd.config import ServerConfig
from chatd.errors import ChatError, ErrorCode
from chatd.hub import Hub
from chatd.passwords import PasswordHasher
from chatd.protocol import encode
from chatd.ratelimit import Clock, KeyedBuckets, LoginThrottle, TokenBucket
from chatd.records import UserRecord
from chatd.sendqueue import ReplySlot
from chatd.store import Store
from chatd.uploads import Uploads

if TYPE_CHECKING:
    from chatd.writer import MessageWriter

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Limits:
    """The server-wide abuse limits: failed logins, registrations per address."""

    failed_logins: LoginThrottle
    registrations: KeyedBuckets

    @classmethod
    def from_config(cls, config: ServerConfig, clock: Clock) -> Limits:
        per_hour = config.registrations_per_hour
        return cls(
            LoginThrottle(config.login_failures, clock=clock),
            KeyedBuckets(per_hour / SECONDS_PER_HOUR, per_hour, clock=clock),
        )


@dataclass(frozen=True, slots=True)
class Services:
    """What every handler may use; one per server."""

    config: ServerConfig
    store: Store
    hub: Hub
    hasher: PasswordHasher
    limits: Limits
    blobs: BlobStore
    uploads: Uploads
    writer: MessageWriter
    clock: Clock = time.monotonic


class Outbox(Protocol):
    def put(self, data: bytes, *, event: bool = False) -> bool: ...

    def reserve(self) -> ReplySlot: ...

    def fill(self, replies: Iterable[tuple[ReplySlot, bytes]]) -> None: ...

    def put_in_order(self, items: Iterable[bytes | tuple[ReplySlot, bytes]]) -> None: ...


def rate_limited(retry_after: float, reason: str = "too many requests") -> ChatError:
    """The rate_limited refusal; `reason` says what is limited, for the human reading it."""
    wait = f"{retry_after:.0f}" if retry_after >= 10 else f"{max(retry_after, 0.1):.1f}"
    return ChatError(
        ErrorCode.RATE_LIMITED,
        f"{reason}; try again in {wait} s",
        retry_after=round(retry_after + 0.0005, 3),
    )


class Session:
    def __init__(
        self,
        peer: str,
        services: Services,
        outbox: Outbox,
        *,
        address: str = "",
        kick: Callable[[ErrorCode, str], None] | None = None,
    ) -> None:
        self.peer = peer
        self.address = address or peer.rsplit(":", 1)[0]
        self.services = services
        self._outbox = outbox
        self._kick = kick
        self.user: UserRecord | None = None
        self.quitting = False
        # Posts handed to the writer, and those it has answered: each counter has
        # one writing thread (the reader; the writer), so no lock is needed.
        self.posts_submitted = 0
        self.posts_answered = 0
        config = services.config
        self.send_bucket = TokenBucket(config.send_rate, config.send_burst, services.clock)

    def deliver(self, data: bytes) -> None:
        """Queue events; they may pass replies that are still waiting for a commit."""
        self._outbox.put(data, event=True)

    def reply(self, frame: dict[str, Any]) -> None:
        self._outbox.put(encode(frame))

    def reserve_reply(self) -> ReplySlot:
        return self._outbox.reserve()

    def fill_replies(self, replies: Iterable[tuple[ReplySlot, bytes]]) -> None:
        self._outbox.fill(replies)

    def deliver_in_order(self, items: Iterable[bytes | tuple[ReplySlot, bytes]]) -> None:
        """A committed batch's events and this connection's replies, in message id order."""
        self._outbox.put_in_order(items)

    def settle(self) -> None:
        """Wait until the writer has answered every message this connection handed it.

        Requests take effect in the order they were sent: a `part` after a
        `send` must not overtake the send's commit, or the send would be
        refused for a membership it had when it was accepted.
        """
        if self.posts_answered != self.posts_submitted:
            self.services.writer.wait_until_written()

    def spend_send_token(self) -> None:
        """Flood control for send, dm and upload: rate_limited past --send-rate."""
        wait = self.send_bucket.take()
        if wait:
            raise rate_limited(wait)

    def kick(self, code: ErrorCode, message: str) -> None:
        """Close this connection on the server's initiative, after an error event."""
        if self._kick is not None:
            self._kick(code, message)

    def __repr__(self) -> str:
        return f"<Session {self.peer} {self.user.username if self.user else '-'}>"
