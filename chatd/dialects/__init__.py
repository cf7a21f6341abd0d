"""Dialects: how a connection's bytes are read and written, one module per protocol.

The hub, the fan-out and the handlers work with typed values (requests,
records, events, replies); a dialect turns them into its own bytes and its
bytes into requests, and a listener gives each connection it accepts its
dialect. A second protocol is a new dialect and listener, never a branch in
the core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from chatd.errors import ChatError, ErrorCode
from chatd.outgoing import Bundle, Outgoing
from chatd.replies import Reply
from chatd.requests import RequestId

# how a conversation asks its connection to close: with an error code and a text
Kick = Callable[[ErrorCode, str], None]


class Conversation(Protocol):
    """One connection's side of its dialect: from the bytes received to the handlers.

    The connection (chatd/connection.py) owns the socket, the threads and
    the deadlines; the conversation knows what the bytes mean.
    """

    def received(self, data: bytes) -> bool:
        """Handle the bytes that arrived; False when the connection should stop reading."""
        ...


class Dialect(Protocol):
    """What one protocol's connections are sent; shared by all of them."""

    key: str  # names this dialect's encodings in Outgoing's cache

    def greeting(self) -> bytes:
        """What the server says first (JSON: the welcome event)."""
        ...

    def events(self, item: Outgoing | Bundle) -> bytes: ...

    def message_reply(self, rid: RequestId, item: Outgoing) -> bytes:
        """The reply to the request that stored this message."""
        ...

    def reply(self, rid: RequestId, result: Reply) -> bytes: ...

    def refusal(self, rid: RequestId, error: ChatError) -> bytes: ...

    def farewell(self, code: ErrorCode, message: str) -> bytes:
        """What to say before the server closes a connection on its own."""
        ...

    def shutdown(self, reason: str) -> bytes: ...
