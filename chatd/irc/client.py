"""The dialect one IRC connection's session speaks: the shared rendering seen through its state.

The JSON dialect is the same for every connection; IRC's output depends on
the connection (its nick, its capabilities, the channels it has been shown,
the labels of its commands). So each IRC session gets a `ClientDialect`:
events go through the shared cache under the client's flags, and the few
per-connection decisions (a room this client was not shown yet, a direct
message it sent itself, a label) are taken here, before or after the cache.
"""

from __future__ import annotations

from chatd.errors import ChatError, ErrorCode
from chatd.events import Joined, Parted, TopicChanged
from chatd.irc import caps
from chatd.irc.away import AwayChanged
from chatd.irc.codec import encode_line
from chatd.irc.names import channel_of
from chatd.irc.render import in_batch, labeled
from chatd.irc.replies import join_burst, render_refusal, render_reply
from chatd.irc.state import Pending, State
from chatd.names import username_key
from chatd.outgoing import Bundle, Outgoing
from chatd.records import Message
from chatd.replies import Reply
from chatd.requests import RequestId
from chatd.services import Services

KEY = "irc"


class ClientDialect:
    key = KEY

    def __init__(self, state: State, services: Services, farewell: ClosingLines) -> None:
        self.state = state
        self._services = services
        self._closing = farewell

    def greeting(self) -> bytes:
        return b""

    # events

    def events(self, item: Outgoing | Bundle) -> bytes:
        state = self.state
        if not state.registered:
            # why: nothing is shown before 001; the joins that follow replay rooms, and a
            # direct message waits for the welcome
            if isinstance(item, Outgoing) and _is_direct(item) and state.keep_early(item):
                return b""
            if not state.registered:
                return b""
        if isinstance(item, Bundle):
            first = item.items[0].event  # a room's share of a batch: its messages
            if not isinstance(first, Message) or first.room not in state.channels:
                return b""
            return item.joined(state.key, state.encode_event)
        event = item.event
        if isinstance(event, Message):
            if event.room is None:
                if not self._wants_direct(event):
                    return b""
            elif event.room not in state.channels:
                return b""
            return state.encode_event(item)
        if isinstance(event, Joined | Parted) and self._is_me(event.user):
            return self._own_membership(event)
        if isinstance(event, Joined | Parted | TopicChanged) and event.room not in state.channels:
            return b""
        if isinstance(event, AwayChanged) and not state.has(caps.AWAY_NOTIFY):
            return b""
        return state.encode_event(item)

    def _is_me(self, user: str) -> bool:
        mine = self.state.username
        return mine is not None and username_key(user) == username_key(mine)

    def _wants_direct(self, message: Message) -> bool:
        """A direct message this user sent from elsewhere reaches clients that can show it."""
        if not self._is_me(message.user) or self._is_me(message.to or ""):
            return True
        return self.state.has(caps.SELF_MESSAGE)

    def _own_membership(self, event: Joined | Parted) -> bytes:
        """This user joined or left a room on another connection: this client follows."""
        state = self.state
        if isinstance(event, Parted):
            if event.room not in state.channels:
                return b""
            state.channels.discard(event.room)
            assert state.username is not None
            source = state.renderer.source(state.username)
            return encode_line("PART", [channel_of(event.room)], source)
        if event.room in state.channels:
            return b""
        hub = self._services.hub
        record = hub.room(event.room)
        members, _online = hub.members(event.room)
        topic = record.topic if record is not None else ""
        return join_burst(state, self._services, event.room, topic, members, [])

    # answers

    def message_reply(self, rid: RequestId, item: Outgoing) -> bytes:
        """A PRIVMSG or NOTICE stored: its echo for echo-message clients, else nothing."""
        state = self.state
        pending = state.take(rid)
        data = b""
        if state.has(caps.ECHO_MESSAGE):
            if pending.verb == "NOTICE":
                assert isinstance(item.event, Message)
                data = state.renderer.message(item.event, state.flags, "NOTICE")
            else:
                data = state.encode_event(item)
        return self.finish(pending, data)

    def reply(self, rid: RequestId, result: Reply) -> bytes:
        pending = self.state.take(rid)
        return self.finish(pending, render_reply(self.state, self._services, pending, result))

    def refusal(self, rid: RequestId, error: ChatError) -> bytes:
        pending = self.state.take(rid)
        return self.finish(pending, render_refusal(self.state, pending, error))

    def finish(self, pending: Pending, data: bytes) -> bytes:
        """A command's answer as sent: in its labeled-response batch, or labeled, or bare."""
        if pending.batch is not None:
            return in_batch(data, pending.batch)
        if pending.label is not None:
            state = self.state
            return labeled(state.renderer, data, pending.label, state.batch_id())
        return data

    # the server's own

    def farewell(self, code: ErrorCode, message: str) -> bytes:
        return self._closing.farewell(code, message)

    def shutdown(self, reason: str) -> bytes:
        return self._closing.shutdown(reason)


def _is_direct(item: Outgoing) -> bool:
    event = item.event
    return isinstance(event, Message) and event.room is None


class ClosingLines:
    """ERROR lines: what every IRC connection is told before the server closes it."""

    def farewell(self, code: ErrorCode, message: str) -> bytes:
        return encode_line("ERROR", [f"Closing link: {message}"])

    def shutdown(self, reason: str) -> bytes:
        return encode_line("ERROR", [f"Closing link: {reason}"])
