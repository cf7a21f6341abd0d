"""The IRC dialect: chatd's rooms, direct messages and history for IRC clients.

A listener of its own (--irc-port, --irc-tls-port) gives each connection an
`Conversation` (chatd/irc/conversation.py): lines are read with the pure codec (chatd/irc/codec.py),
each command is found in one table (chatd/irc/commands.py) that checks its
parameters and whether it may come before registration, and commands that
mean a chatd op dispatch its typed request through the same handlers as the
JSON protocol. The session speaks a per-connection `ClientDialect`, since
what IRC sends depends on the client's nick, capabilities and labels; the
events themselves are rendered once per capability set and shared.
"""

from __future__ import annotations

from collections.abc import Callable

from chatd.config import ServerConfig
from chatd.dialects import Kick
from chatd.errors import ChatError, ErrorCode
from chatd.irc.away import AwayBook
from chatd.irc.client import KEY, ClientDialect, ClosingLines
from chatd.irc.commands import COMMANDS
from chatd.irc.conversation import Conversation
from chatd.irc.render import Renderer
from chatd.irc.state import State
from chatd.outgoing import Bundle, Outgoing
from chatd.ratelimit import Clock
from chatd.replies import Reply
from chatd.requests import RequestId
from chatd.session import Session
from chatd.store import Store


class MsgidPrefix:
    """The database's msgid prefix, read once there is an account (there are no messages before)."""

    def __init__(self) -> None:
        self._prefix: str | None = None
        self.store: Store | None = None

    def __call__(self) -> str:
        if self._prefix is None:
            stamp = self.store.first_account() if self.store is not None else None
            if stamp is None:
                return "x"
            self._prefix = _prefix_of(*stamp)
        return self._prefix


def _prefix_of(account_id: int, created_ms: int) -> str:
    """A short name for this database: its first account's id and creation time, in base 36."""
    value = created_ms * 1000 + account_id % 1000
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while value:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
    return out or "0"


class IrcDialect:
    """What every IRC connection of a server shares: the renderer, the away book, goodbyes."""

    key = KEY

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.msgid_prefix = MsgidPrefix()
        self.renderer = Renderer(config.irc_name, self.msgid_prefix)
        self.away = AwayBook()
        self._closing = ClosingLines()

    def greeting(self) -> bytes:
        return b""

    def events(self, item: Outgoing | Bundle) -> bytes:  # each session speaks its own ClientDialect
        return b""

    def message_reply(self, rid: RequestId, item: Outgoing) -> bytes:
        return b""

    def reply(self, rid: RequestId, result: Reply) -> bytes:
        return b""

    def refusal(self, rid: RequestId, error: ChatError) -> bytes:
        return b""

    def farewell(self, code: ErrorCode, message: str) -> bytes:
        return self._closing.farewell(code, message)

    def shutdown(self, reason: str) -> bytes:
        return self._closing.shutdown(reason)

    def converse(
        self, session: Session, kick: Kick, stopping: Callable[[], bool], clock: Clock
    ) -> Conversation:
        """A new connection's conversation; its session speaks a ClientDialect of its own."""
        self.msgid_prefix.store = session.services.store
        state = State(self.renderer)
        dialect = ClientDialect(state, session.services, self._closing)
        session.dialect = dialect
        return Conversation(session, state, dialect, self.away, kick, stopping, clock, COMMANDS)
