"""The room list's counts: what each conversation holds unread, and how many call the user.

Seeded from the server's `unread` at login (counts it keeps for every
device), then kept live: a message that arrives where the user is not
looking counts; showing a conversation in the focused terminal clears it; a
`read` event (another device, or the user's own message) clears what it
covers. Messages counted live are remembered by id, so a `read` event
clears exactly those below its marker; the server's own count is cleared
once the marker passes the newest message it counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from client.conversations import Conversation

# PROTOCOL.md: the server's counts stop here; the list says "1000+"
COUNT_CAP = 1000


@dataclass(slots=True)
class Counts:
    seeded: int = 0  # the server's count at login
    seeded_mentions: int = 0
    seeded_upto: int = 0  # the newest message id the server's count covers
    # ids counted since, oldest first (a dict: a set's lookup, at thousands unread per room)
    live: dict[int, None] = field(default_factory=dict)
    live_mentions: set[int] = field(default_factory=set)

    @property
    def unread(self) -> int:
        return self.seeded + len(self.live)

    @property
    def mentions(self) -> int:
        return self.seeded_mentions + len(self.live_mentions)


class Activity:
    def __init__(self) -> None:
        self._counts: dict[Conversation, Counts] = {}
        self._direct_order: list[str] = []  # people, most recently active first

    def seed(self, reply: Mapping[str, Any]) -> dict[Conversation, int]:
        """The `unread` reply; returns each conversation's read marker (where "new" starts)."""
        markers: dict[Conversation, int] = {}
        for key, kind, name_key in (("rooms", "room", "room"), ("dms", "with", "with")):
            entries = reply.get(key)
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, Mapping) or not isinstance(entry.get(name_key), str):
                    continue
                conversation = (kind, entry[name_key])
                unread, mentions = _count(entry.get("unread")), _count(entry.get("mentions"))
                if kind == "with":
                    mentions = unread  # every unread direct message calls the user
                    self._direct_order.append(entry[name_key])
                self._counts[conversation] = Counts(unread, mentions, _count(entry.get("last_id")))
                if isinstance(entry.get("last_read"), int):
                    markers[conversation] = entry["last_read"]
        return markers

    def arrived(self, conversation: Conversation, message_id: int, *, calls_me: bool) -> bool:
        """A message shown out of view; False if it was counted already."""
        counts = self._counts.setdefault(conversation, Counts())
        if message_id in counts.live or message_id <= counts.seeded_upto:
            return False
        counts.live[message_id] = None
        if calls_me:
            counts.live_mentions.add(message_id)
        return True

    def seen(self, conversation: Conversation) -> None:
        """Shown in the focused terminal: nothing there is unread any more."""
        self._counts[conversation] = Counts(seeded_upto=self._newest(conversation))

    def read_upto(self, conversation: Conversation, last_read: int) -> None:
        counts = self._counts.get(conversation)
        if counts is None:
            return
        if last_read >= counts.seeded_upto:
            counts.seeded = counts.seeded_mentions = 0
        counts.live = {mid: None for mid in counts.live if mid > last_read}
        counts.live_mentions = {mid for mid in counts.live_mentions if mid > last_read}

    def touched(self, person: str) -> None:
        """A direct conversation was active: it moves to the top of the people listed."""
        if person in self._direct_order:
            self._direct_order.remove(person)
        self._direct_order.insert(0, person)

    def people(self) -> list[str]:
        return list(self._direct_order)

    def unread(self, conversation: Conversation) -> int:
        counts = self._counts.get(conversation)
        return 0 if counts is None else counts.unread

    def mentions(self, conversation: Conversation) -> int:
        counts = self._counts.get(conversation)
        return 0 if counts is None else counts.mentions

    def label(self, conversation: Conversation) -> str:
        """`12`, `3!` (some call the user), `1000+`; "" when nothing is unread."""
        unread = self.unread(conversation)
        if not unread:
            return ""
        shown = f"{COUNT_CAP}+" if unread >= COUNT_CAP else str(unread)
        return shown + ("!" if self.mentions(conversation) else "")

    def next_active(
        self, order: list[Conversation], current: Conversation | None
    ) -> Conversation | None:
        """The next conversation after `current` with something unread, mentions first."""
        if current in order:
            start = order.index(current) + 1
            order = order[start:] + order[:start]
        for wanted in (self.mentions, self.unread):
            for conversation in order:
                if conversation != current and wanted(conversation):
                    return conversation
        return None

    def _newest(self, conversation: Conversation) -> int:
        counts = self._counts.get(conversation)
        if counts is None:
            return 0
        return max([counts.seeded_upto, *counts.live])


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
