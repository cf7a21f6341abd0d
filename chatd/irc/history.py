"""CHATHISTORY (IRCv3 draft/chathistory): pages of a room's or a conversation's history.

Each subcommand becomes chatd's `history` or `dm_history` request, with
message ids as bounds: a `msgid=` reference is an id already, a
`timestamp=` one becomes the newest id older than that time (the store's
`last_id_before`). What one request cannot say (LATEST after a reference,
BETWEEN from the newer end, AROUND) is a request plus a filter, or two
requests whose messages are answered together.
"""

from __future__ import annotations

from typing import Any

from chatd.irc import caps
from chatd.irc.caps import CHATHISTORY_LIMIT
from chatd.irc.codec import Line
from chatd.irc.conversation import Conversation
from chatd.irc.names import message_id_of, nick_of, room_of, username_of
from chatd.irc.render import wrap_batch
from chatd.irc.state import Pending
from chatd.names import format_ts, parse_ts
from chatd.records import Message
from chatd.requests import DmHistory, History

SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "TARGETS")


class Refused(Exception):
    """A CHATHISTORY the client got wrong: FAIL CHATHISTORY <code>."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Target:
    """The room or conversation asked about, and how its ids and times are found."""

    def __init__(self, conv: Conversation, name: str) -> None:
        self.conv = conv
        self.name = name
        self.room = room_of(name) if name.startswith("#") else None
        self.user = None if self.room is not None else username_of(name)
        if self.room is None and self.user is None:
            raise Refused("INVALID_TARGET", "no such room or nick")

    def page(self, pending: Pending, before: int | None, after: int | None, limit: int) -> bool:
        """Ask for a page of the target's history; False when it was refused."""
        page: dict[str, Any] = {"before": before, "after": after, "limit": limit}
        if self.room is not None:
            return self.conv.request(History, pending, room=self.room, **page) is None
        return self.conv.request(DmHistory, pending, with_=self.user, **page) is None

    def last_id_before(self, ts_ms: int) -> int:
        services = self.conv.services
        if self.room is not None:
            record = services.hub.room(self.room)
            return 0 if record is None else services.store.last_id_before(ts_ms, room=record)
        me = self.conv.session.user
        other = services.store.user_by_name(self.user or "")
        if me is None or other is None:
            return 0
        return services.store.last_id_before(ts_ms, pair=(me.id, other.id))

    def below(self, ref: str) -> int:
        """The exclusive upper bound (id < it) that a reference stands for."""
        kind, value = _ref(self.conv, ref)
        return value if kind == "msgid" else self.last_id_before(value) + 1

    def above(self, ref: str) -> int:
        """The exclusive lower bound (id > it) that a reference stands for."""
        kind, value = _ref(self.conv, ref)
        return value if kind == "msgid" else self.last_id_before(value + 1)


def _ref(conv: Conversation, ref: str) -> tuple[str, int]:
    kind, _eq, value = ref.partition("=")
    if kind == "msgid":
        found = message_id_of(_prefix(conv), value)
        if found is None:
            raise Refused("INVALID_MSGREFTYPE", f"unknown msgid {value[:40]}")
        return kind, found
    if kind == "timestamp":
        try:
            return kind, parse_ts(value)
        except ValueError:
            raise Refused("INVALID_PARAMS", "timestamp is not RFC 3339") from None
    raise Refused("INVALID_MSGREFTYPE", "a reference is msgid=... or timestamp=...")


def _prefix(conv: Conversation) -> str:
    return conv.renderer.msgid(0).rpartition("-")[0]


def _limit(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise Refused("INVALID_PARAMS", "limit must be a positive number")
    return min(int(text), CHATHISTORY_LIMIT)


def chathistory(conv: Conversation, line: Line) -> None:
    """CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN|TARGETS ... -> a chathistory batch."""
    params = line.params
    sub = params[0].upper()
    try:
        if sub not in SUBCOMMANDS:
            raise Refused("INVALID_PARAMS", f"unknown subcommand {params[0][:20]}")
        if sub == "TARGETS":
            _targets(conv, params[1:])
            return
        if len(params) < 4 or (sub == "BETWEEN" and len(params) < 5):
            raise Refused("NEED_MORE_PARAMS", "not enough parameters")
        target = Target(conv, params[1])
        _page(conv, sub, target, params[2:])
    except Refused as refused:
        conv.fail("CHATHISTORY", refused.code, *params[:2], str(refused))


def _page(conv: Conversation, sub: str, target: Target, args: list[str]) -> None:
    limit = _limit(args[-1])
    pending = Pending("CHATHISTORY", target.name, extra={"args": [sub, target.name]})
    if sub == "LATEST":
        floor = 0 if args[0] == "*" else target.above(args[0])
        pending.keep = lambda message: message.id > floor
        target.page(pending, None, None, limit)
    elif sub == "BEFORE":
        target.page(pending, target.below(args[0]), None, limit)
    elif sub == "AFTER":
        target.page(pending, None, target.above(args[0]), limit)
    elif sub == "BETWEEN":
        first_above, second_below = target.above(args[0]), target.below(args[1])
        if first_above < second_below:  # oldest first, from the first reference on
            target.page(pending, second_below, first_above, limit)
        else:  # the first is the newer end: the newest before it, down to the second
            floor = target.above(args[1])
            pending.keep = lambda message: message.id > floor
            target.page(pending, target.below(args[0]), None, limit)
    else:
        _around(conv, target, args[0], limit, pending)


def _collector(into: list[Message], args: list[str]) -> Pending:
    """A history request whose messages are kept in `into` and answered with nothing."""

    def keep(message: Message) -> bool:
        into.append(message)
        return True

    return Pending("CHATHISTORY", extra={"args": args, "silent": True}, keep=keep)


def _around(conv: Conversation, target: Target, ref: str, limit: int, pending: Pending) -> None:
    """AROUND: up to `limit` messages, half before the reference (it included) and half after."""
    kind, _value = _ref(conv, ref)
    pivot = target.below(ref) if kind == "timestamp" else target.above(ref) + 1
    older: list[Message] = []
    conv.several()
    if not target.page(_collector(older, []), pivot, None, limit - limit // 2):
        return
    floor = older[-1].id if older else pivot - 1
    pending.extra["before"] = older
    target.page(pending, None, floor, limit - len(older))


def _targets(conv: Conversation, args: list[str]) -> None:
    """TARGETS ts ts limit: the rooms and conversations with messages between the two times."""
    if len(args) < 3:
        raise Refused("NEED_MORE_PARAMS", "not enough parameters")
    if not all(ref.startswith("timestamp=") for ref in args[:2]):
        raise Refused("INVALID_PARAMS", "TARGETS takes two timestamps")
    low, high = sorted(_ref(conv, ref)[1] for ref in args[:2])
    limit = _limit(args[2])
    newest: list[Message] = []
    conv.several()
    for room in sorted(conv.state.channels):
        conv.request(History, _collector(newest, []), room=room, limit=1)
    conv.request(DmHistory, _collector(newest, []), limit=CHATHISTORY_LIMIT)
    me = (conv.state.username or "").lower()
    latest: dict[str, int] = {}
    for message in newest:
        if message.room is not None:
            name = "#" + message.room
        else:
            other = message.to if message.user.lower() == me else message.user
            name = nick_of(other or message.user)
        latest[name] = max(latest.get(name, 0), message.ts_ms)
    found = sorted((ms, name) for name, ms in latest.items() if low < ms < high)[:limit]
    renderer = conv.renderer
    lines = b"".join(
        renderer.line("CHATHISTORY", "TARGETS", name, format_ts(ms)) for ms, name in found
    )
    state = conv.state
    if state.has(caps.BATCH):
        lines = wrap_batch(renderer, state.batch_id(), "draft/chathistory-targets", lines)
    conv.reply(lines)
