"""AWAY: who is away on IRC, with what message, and the event that tells co-members.

Away is the gateway's own idea (chatd's protocol has no such thing), kept
per server in memory: a user is away while any of their IRC connections
says so, and back when one says it is back. Clients that enabled
away-notify in rooms shared with the user are told; this node's only, as
the bus carries no away state between nodes.
"""

from __future__ import annotations

import threading

from chatd.events import Event
from chatd.names import username_key

AWAYLEN = 300


class AwayChanged(Event, frozen=True, tag="away"):
    """`user` went away (`message` set) or came back (""): for away-notify clients only."""

    user: str
    message: str


class AwayBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _away; held for one dict operation
        self._away: dict[str, str] = {}

    def set(self, username: str, message: str) -> bool:
        """Record the user's away message ("" for back); True when that changed anything."""
        key = username_key(username)
        with self._lock:
            before = self._away.get(key, "")
            if message:
                self._away[key] = message
            else:
                self._away.pop(key, None)
        return before != message

    def message(self, username: str) -> str:
        with self._lock:
            return self._away.get(username_key(username), "")
