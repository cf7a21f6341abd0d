"""One client connection as handlers and the fan-out see it: who is logged in, where bytes go.

The socket lives in connection.py; a Session only queues bytes, which never
blocks, so the fan-out and handlers can deliver while holding a room's
order lock. What the bytes are is its dialect's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from chatd.dialects import Dialect
from chatd.errors import ChatError, ErrorCode, rate_limited
from chatd.fanout import InOrder
from chatd.outgoing import Bundle, Outgoing
from chatd.ratelimit import TokenBucket
from chatd.records import UserRecord
from chatd.replies import Reply
from chatd.requests import RequestId
from chatd.sendqueue import ReplySlot
from chatd.services import Services


class Outbox(Protocol):
    def put(self, data: bytes, *, event: bool = False) -> bool: ...

    def reserve(self) -> ReplySlot: ...

    def fill(self, replies: Iterable[tuple[ReplySlot, bytes]]) -> None: ...

    def put_in_order(self, items: Iterable[bytes | tuple[ReplySlot, bytes]]) -> None: ...


class Session:
    def __init__(
        self,
        peer: str,
        services: Services,
        outbox: Outbox,
        dialect: Dialect,
        *,
        address: str = "",
        kick: Callable[[ErrorCode, str], None] | None = None,
    ) -> None:
        self.peer = peer
        self.address = address or peer.rsplit(":", 1)[0]
        self.services = services
        self.dialect = dialect
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

    # what the fan-out calls

    def deliver(self, item: Outgoing | Bundle) -> None:
        """Queue events; they may pass replies still waiting for a later commit."""
        self._outbox.put(self.dialect.events(item), event=True)

    def deliver_in_order(self, items: Sequence[InOrder]) -> None:
        """A committed batch's events and this connection's replies, in message id order."""
        dialect = self.dialect
        encoded: list[bytes | tuple[ReplySlot, bytes]] = []
        replies = 0
        for item in items:
            if isinstance(item, Outgoing):
                encoded.append(dialect.events(item))
            else:
                slot, rid, message = item
                encoded.append((slot, dialect.message_reply(rid, message)))
                replies += 1
        self._outbox.put_in_order(encoded)
        self.posts_answered += replies

    def refuse_post(self, slot: ReplySlot, rid: RequestId, error: ChatError) -> None:
        """A message the writer could not store: its reply is this error."""
        self._outbox.fill([(slot, self.dialect.refusal(rid, error))])
        self.posts_answered += 1

    def kick(self, code: ErrorCode, message: str) -> None:
        """Close this connection on the server's initiative, after an error event."""
        if self._kick is not None:
            self._kick(code, message)

    # what the dispatcher and handlers call

    def reply(self, rid: RequestId, result: Reply) -> None:
        self._outbox.put(self.dialect.reply(rid, result))

    def refuse(self, rid: RequestId, error: ChatError) -> None:
        self._outbox.put(self.dialect.refusal(rid, error))

    def reserve_reply(self) -> ReplySlot:
        return self._outbox.reserve()

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

    def __repr__(self) -> str:
        return f"<Session {self.peer} {self.user.username if self.user else '-'}>"
