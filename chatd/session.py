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
from chatd.replies import JoinReply, Reply
from chatd.requests import RequestId
from chatd.sendqueue import ReplySlot
from chatd.services import Services


class Outbox(Protocol):
    def put(self, data: bytes, *, event: bool = False, barrier: bool = False) -> bool: ...

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
        # room -> member or not, once the joins and parts still with the writer are done
        self._expected: dict[str, bool] = {}
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

    def answer_post(self, slot: ReplySlot, rid: RequestId, result: Reply) -> None:
        """A change the writer stored (a join, a part, a topic): its reply."""
        self._outbox.fill([(slot, self.dialect.reply(rid, result))])
        self.posts_answered += 1

    def refuse_post(self, slot: ReplySlot, rid: RequestId, error: ChatError) -> None:
        """A change the writer could not store: its reply is this error."""
        self._outbox.fill([(slot, self.dialect.refusal(rid, error))])
        self.posts_answered += 1

    def kick(self, code: ErrorCode, message: str) -> None:
        """Close this connection on the server's initiative, after an error event."""
        if self._kick is not None:
            self._kick(code, message)

    # what the dispatcher and handlers call

    def reply(self, rid: RequestId, result: Reply) -> None:
        """A join's reply holds the room's history: the room's next events must not pass it."""
        barrier = isinstance(result, JoinReply)
        self._outbox.put(self.dialect.reply(rid, result), barrier=barrier)

    def refuse(self, rid: RequestId, error: ChatError) -> None:
        self._outbox.put(self.dialect.refusal(rid, error))

    def say(self, data: bytes) -> None:
        """Bytes of the dialect's own, in request order: IRC's answers to commands that
        become no request (CAP, NICK, numerics)."""
        self._outbox.put(data)

    def reserve_reply(self) -> ReplySlot:
        return self._outbox.reserve()

    def expect(self, room: str, member: bool) -> None:
        """A join (True) or part (False) of `room` was handed to the writer."""
        if self.posts_answered == self.posts_submitted:
            self._expected.clear()  # all done: the hub says it all
        self._expected[room] = member

    def expects(self, room: str) -> bool | None:
        """Whether this connection's user will be a member of `room` once its pending
        joins and parts are done; None when none is pending and the hub knows.

        Requests take effect in order: a `send` right after a `join` of the
        same room is the joiner's, though the writer has not stored the join.
        """
        if self.posts_answered == self.posts_submitted:
            return None
        return self._expected.get(room)

    def spend_send_token(self) -> None:
        """Flood control for send, dm and upload: rate_limited past --send-rate."""
        wait = self.send_bucket.take()
        if wait:
            raise rate_limited(wait)

    def __repr__(self) -> str:
        return f"<Session {self.peer} {self.user.username if self.user else '-'}>"
