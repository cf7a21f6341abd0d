"""Pure bookkeeping for a reconnect: what was missed, and which lost sends were stored.

A reply lost with the connection leaves a `send` or `dm` in doubt: the server
may have stored it. These functions compare the history fetched after the
reconnect with what the session knew, so it neither shows a message twice nor
sends one twice. No sockets here; session.py does the fetching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatd.events import EventName

Frame = dict[str, Any]
# why: enough to read back an afternoon away; past it the client shows a gap
# line that /history fills, instead of holding thousands of lines at once.
MISSED_CAP = 1000


@dataclass
class Missed:
    """What a reconnect found: messages per room, direct messages, and where some were left out.

    `gaps` maps a room to (last id seen, oldest id fetched): more than
    MISSED_CAP messages came in between, and the older ones were not fetched.
    """

    rooms: dict[str, list[Frame]] = field(default_factory=dict)
    direct: list[Frame] = field(default_factory=list)
    gaps: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(messages) for messages in self.rooms.values()) + len(self.direct)


def message_id(message: object) -> int | None:
    if isinstance(message, dict):
        mid = message.get("id")
        if isinstance(mid, int) and not isinstance(mid, bool):
            return mid
    return None


def messages_in(value: object) -> list[Frame]:
    """The message objects of a reply's `history` or `messages`, ignoring anything else."""
    if not isinstance(value, list):
        return []
    return [m for m in value if message_id(m) is not None]


def newer_than(history: Iterable[Frame], since: int) -> list[Frame]:
    """The messages of a rejoin history that the user has not seen yet."""
    return [m for m in history if (message_id(m) or 0) > since]


def newer_pages(
    fetch: Callable[[int | None, int], list[Frame]],
    since: int,
    *,
    page: int,
    newest: list[Frame] | None = None,
    newest_page: int | None = None,
    cap: int = MISSED_CAP,
) -> tuple[list[Frame], int | None]:
    """Every message newer than `since`, paging back with fetch(before, limit) to reach it.

    `newest` is a first page already in hand (a rejoin's history, of at most
    `newest_page` messages). Returns the messages, oldest first, and None
    when they are all there, or, when `cap` was reached first, the oldest id
    fetched: the messages between `since` and it were left out.
    """
    found: list[Frame] = []
    if newest is None:
        size = min(page, cap)
        batch = fetch(None, size)
    else:
        batch, size = newest, newest_page or page
    while True:
        fresh = newer_than(batch, since)
        found[:0] = fresh
        if not fresh or len(fresh) < len(batch) or len(batch) < size:
            return found, None
        oldest = message_id(fresh[0])
        room = cap - len(found)
        if room <= 0 or oldest is None:
            return found, oldest
        size = min(page, room)
        batch = fetch(oldest, size)


def rooms_to_rejoin(ours: Sequence[str], servers: object) -> list[str]:
    """Our rooms first, in order, then any the server lists that we did not know of."""
    extra = [r for r in servers if isinstance(r, str)] if isinstance(servers, list) else []
    return [*ours, *(room for room in extra if room not in ours)]


def find_stored(
    candidates: Iterable[Frame], *, me: str, text: str, after: int, taken: Iterable[Frame] = ()
) -> Frame | None:
    """Our message with this text stored after id `after`, if the server has it.

    `taken` are messages already matched to other lost sends, so two identical
    lines typed in a row match two stored messages, not one.
    """
    wanted = text.rstrip()  # what the server stores
    used = {id(m) for m in taken}
    for message in candidates:
        if (
            (message_id(message) or 0) > after
            and str(message.get("user", "")).lower() == me.lower()
            and message.get("text") == wanted
            and id(message) not in used
        ):
            return message
    return None


class Whereabouts:
    """The joined rooms and newest message ids: what a reconnect needs to rejoin and catch up.

    Not thread-safe by itself; the session guards it with its lock.
    """

    def __init__(self) -> None:
        self.rooms: dict[str, None] = {}  # an insertion-ordered set
        self.last_id: dict[str, int] = {}  # newest message id seen per room
        self.max_id = 0  # newest message id seen anywhere
        self.direct_id = 0  # newest direct message id seen

    def seen(self, messages: Iterable[object]) -> None:
        for message in messages:
            mid = message_id(message)
            if mid is None:
                continue
            assert isinstance(message, dict)
            self.max_id = max(self.max_id, mid)
            room = message.get("room")
            if isinstance(room, str):
                self.last_id[room] = max(self.last_id.get(room, 0), mid)
            elif room is None:
                self.direct_id = max(self.direct_id, mid)

    def mark(self, args: Frame) -> int:
        """The newest id known where a request's message will go; stored copies are newer."""
        room = args.get("room")
        return self.last_id.get(room, 0) if isinstance(room, str) else self.max_id

    def joined(self, room: str, history: Iterable[object] = ()) -> None:
        self.rooms[room] = None
        self.seen(history)

    def reply(self, op: str, reply: Frame) -> None:
        """Learn from an ok reply to one of our requests."""
        room = reply.get("room")
        if op == "join" and isinstance(room, str):
            self.joined(room, messages_in(reply.get("history")))
        elif op == "part" and isinstance(room, str):
            self.rooms.pop(room, None)
        elif op in ("send", "dm", "finish"):  # finish: the message sharing a file
            self.seen([reply.get("message")])

    def is_repeat(self, event: Frame) -> bool:
        """A room message event we already have (from a rejoin history, say).

        Within a room messages arrive in id order, so an id at or below the
        newest seen there has been seen.
        """
        room, mid = event.get("room"), message_id(event)
        if event.get("event") != EventName.MESSAGE or not isinstance(room, str) or mid is None:
            return False
        return mid <= self.last_id.get(room, 0)

    def event(self, event: Frame, me: str) -> None:
        """Learn from an event: new ids, and rooms our other connections joined or left."""
        kind = event.get("event")
        if kind in (EventName.MESSAGE, EventName.DM):
            self.seen([event])
        room = event.get("room")
        if str(event.get("user", "")).lower() != me.lower() or not isinstance(room, str):
            return
        if kind == EventName.JOIN:
            self.rooms[room] = None
        elif kind == EventName.PART:
            self.rooms.pop(room, None)
