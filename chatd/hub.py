"""Rooms, membership and who is online, in memory: what the fan-out needs to know.

The hub mirrors the stored membership so that the fan-out never reads the
database, and keeps each room's last messages once a join has read them
(up to KEPT_HISTORY_BYTES in all), so the next join reads none either. It
delivers nothing itself: chatd/fanout.py does, through `Peer.deliver`.

Locks, in the order they may be taken:
1. a room's order lock (`order_lock(room)`): held by the fan-out of that
   room's share of a committed batch, and by join, part and topic of that
   room around their change and their reply. So every member sees the room's
   ids ascending, and a join's history meets the events after it exactly.
   Holders may write to the database (a first join waits for its fsync
   there, stalling that room only) but never block on a socket.
2. `Hub._lock`: guards the dicts below; held only for dict operations.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from chatd.errors import ErrorCode
from chatd.names import username_key
from chatd.outgoing import Bundle, Outgoing
from chatd.records import Message, RoomRecord


class Peer(Protocol):
    """What the fan-out needs of a connection."""

    def deliver(self, item: Outgoing | Bundle) -> None: ...

    def kick(self, code: ErrorCode, message: str) -> None: ...


# why: kept history is a cache; unbounded, every room joined since the start would hold
# up to history_size messages (as much as 50 x 16 KiB) for as long as the server runs.
KEPT_HISTORY_BYTES = 16 * 1024 * 1024
# what a kept message costs beyond its text: the Struct, its encodings, the deque slot
KEPT_OVERHEAD_BYTES = 400


def kept_size(item: Outgoing) -> int:
    event = item.event
    text = event.text if isinstance(event, Message) else ""
    return len(text) * 2 + KEPT_OVERHEAD_BYTES


@dataclass(slots=True)
class RoomState:
    record: RoomRecord
    topic: str
    members: dict[str, str] = field(default_factory=dict)  # username key -> username
    recent: deque[Outgoing] | None = None  # the last messages, oldest first, once read
    recent_bytes: int = 0
    delivered: int = 0  # the log position last delivered here since start; 0: none yet

    @property
    def current(self) -> RoomRecord:
        """The room's record with its topic as it is now."""
        if self.topic != self.record.topic:
            self.record = RoomRecord(self.record.id, self.record.name, self.topic)
        return self.record


class Hub:
    def __init__(
        self,
        history_size: int = 50,
        last_message_id: int = 0,
        kept_bytes: int = KEPT_HISTORY_BYTES,
        log_position: int = 0,
        presence: Callable[[str, bool], None] | None = None,
    ) -> None:
        """`presence(username, online)` hears of a user's first connection here and last."""
        self._lock = threading.Lock()
        self._rooms: dict[str, RoomState] = {}
        self._order_locks: dict[str, threading.Lock] = {}
        self._online: dict[str, set[Peer]] = {}  # username key -> this node's connections
        self._elsewhere: dict[str, int] = {}  # username key -> other nodes it is connected to
        self._presence = presence
        self._history_size = history_size
        self._kept: dict[str, RoomState] = {}  # rooms with kept history, least recently used first
        self._kept_bytes = 0
        self._kept_limit = kept_bytes
        # every log position up to here was delivered before this server started: a
        # join may show what it holds without waiting for the fan-out
        self._known_before = log_position
        self._last_message_id = last_message_id  # the newest message id committed

    def load(self, rooms: Iterable[tuple[RoomRecord, list[str]]]) -> None:
        with self._lock:
            for record, members in rooms:
                if record.name in self._rooms:
                    self._drop_recent(record.name, self._rooms[record.name])
                self._rooms[record.name] = RoomState(
                    record, record.topic, {username_key(name): name for name in members}
                )

    # who is online

    def connect(self, username: str, peer: Peer) -> None:
        key = username_key(username)
        with self._lock:
            peers = self._online.get(key)
            if peers is None:
                peers = self._online[key] = set()
                if self._presence is not None:  # under the lock: the bus keeps their order
                    self._presence(key, True)
            peers.add(peer)

    def disconnect(self, username: str, peer: Peer) -> None:
        key = username_key(username)
        with self._lock:
            peers = self._online.get(key)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._online[key]
                    if self._presence is not None:
                        self._presence(key, False)

    def online_elsewhere(self, came: Iterable[str], went: Iterable[str]) -> None:
        """Username keys whose first connection to some other node opened, or last closed."""
        with self._lock:
            elsewhere = self._elsewhere
            for key in came:
                elsewhere[key] = elsewhere.get(key, 0) + 1
            for key in went:
                count = elsewhere.get(key, 0) - 1
                if count > 0:
                    elsewhere[key] = count
                else:
                    elsewhere.pop(key, None)

    def peers_of(self, username: str) -> list[Peer]:
        with self._lock:
            return list(self._online.get(username_key(username), ()))

    def peers_of_users(self, usernames: Iterable[str]) -> list[Peer]:
        """Every connection of the named users, each once."""
        with self._lock:
            peers = {
                id(peer): peer
                for name in usernames
                for peer in self._online.get(username_key(name), ())
            }
        return list(peers.values())

    def room_peers(self, room: str) -> list[Peer]:
        """Every connection of every member of `room`."""
        with self._lock:
            state = self._rooms.get(room)
            if state is None:
                return []
            return [peer for key in state.members for peer in self._online.get(key, ())]

    # rooms

    def order_lock(self, room: str) -> threading.Lock:
        """The room's order lock (tier 1), made on first use: rooms are never deleted."""
        with self._lock:
            lock = self._order_locks.get(room)
            if lock is None:
                lock = self._order_locks[room] = threading.Lock()
            return lock

    def room(self, name: str) -> RoomRecord | None:
        with self._lock:
            state = self._rooms.get(name)
            return None if state is None else state.current

    def room_of_member(self, room: str, username: str) -> RoomRecord | None:
        """The room if `username` is a member of it, else None; one look under the lock."""
        with self._lock:
            state = self._rooms.get(room)
            if state is None or username_key(username) not in state.members:
                return None
            return state.current

    def is_member(self, room: str, username: str) -> bool:
        with self._lock:
            state = self._rooms.get(room)
            return state is not None and username_key(username) in state.members

    def add_member(self, record: RoomRecord, username: str) -> None:
        with self._lock:
            state = self._rooms.get(record.name)
            if state is None:
                state = self._rooms[record.name] = RoomState(record, record.topic)
            state.members[username_key(username)] = username

    def remove_member(self, room: str, username: str) -> None:
        with self._lock:
            state = self._rooms.get(room)
            if state is not None:
                state.members.pop(username_key(username), None)

    def set_topic(self, room: str, topic: str) -> None:
        with self._lock:
            self._rooms[room].topic = topic

    def members(self, room: str) -> tuple[list[str], list[str]]:
        """(every member, the members online), each sorted case-insensitively."""
        with self._lock:
            state = self._rooms.get(room)
            if state is None:
                return [], []
            everyone = sorted(state.members.items())
            here, elsewhere = self._online, self._elsewhere
            online = [name for key, name in everyone if key in here or key in elsewhere]
            return [name for _key, name in everyone], online

    # history: callers hold the room's order lock, so kept history and the fan-out agree

    def visible_upto(self, room: str) -> int:
        """The log position up to which `room`'s members have been sent its messages.

        A join's history stops there: a message committed but not yet
        delivered reaches a new member as an event, so the history must not
        show it too.
        """
        with self._lock:
            state = self._rooms.get(room)
            delivered = 0 if state is None else state.delivered
            return max(delivered, self._known_before)

    def recent(self, room: str) -> list[Outgoing] | None:
        """The room's last messages, oldest first, if kept; None: read the store."""
        with self._lock:
            state = self._rooms.get(room)
            if state is None or state.recent is None:
                return None
            self._kept[room] = self._kept.pop(room)  # now the most recently used
            return list(state.recent)

    def keep_recent(self, room: str, messages: list[Outgoing]) -> None:
        """Keep what the store returned as the room's last messages (at most history_size).

        Kept history is bounded by KEPT_HISTORY_BYTES in all; past that the
        rooms whose history was read least recently forget theirs.
        """
        with self._lock:
            state = self._rooms.get(room)
            if state is None or not self._history_size:
                return
            self._drop_recent(room, state)
            state.recent = deque(messages, maxlen=self._history_size)
            state.recent_bytes = sum(map(kept_size, state.recent))
            self._kept[room] = state
            self._kept_bytes += state.recent_bytes
            self._evict()

    def committed(self, first_id: int, last_id: int) -> None:
        """A run of the log's messages with these ids is being delivered (in log order).

        Ids follow the log's order, so a first id that does not follow the
        last one means someone stored messages outside the log (`chatd
        import` while the server runs) or a transaction gave its ids back:
        every kept history is forgotten then, and reloaded by the next join.
        """
        with self._lock:
            if first_id != self._last_message_id + 1:
                self._forget_recent()
            self._last_message_id = max(self._last_message_id, last_id)

    def delivered(self, room: str, position: int, messages: list[Outgoing]) -> None:
        """The room's log is delivered up to `position`, `messages` last (order lock held)."""
        with self._lock:
            state = self._rooms.get(room)
            if state is None:
                return
            state.delivered = max(state.delivered, position)
            if state.recent is None:
                return
            for item in messages:
                grown = kept_size(item)
                if len(state.recent) == state.recent.maxlen:
                    grown -= kept_size(state.recent[0])  # the append pushes the oldest out
                state.recent.append(item)
                state.recent_bytes += grown
                self._kept_bytes += grown
            self._evict()

    def revise(self, room: str, message_id: int, change: Callable[[Message], Message]) -> None:
        """A message was edited or deleted: its kept copy, if any, becomes `change(kept)`."""
        with self._lock:
            state = self._rooms.get(room)
            if state is None or state.recent is None:
                return
            for index, item in enumerate(state.recent):
                kept = item.event
                if isinstance(kept, Message) and kept.id == message_id:
                    revised = Outgoing(change(kept))
                    grown = kept_size(revised) - kept_size(item)
                    state.recent[index] = revised
                    state.recent_bytes += grown
                    self._kept_bytes += grown
                    return

    def check_newest(self, newest_stored: int) -> bool:
        """Forget every kept history if the store has messages this server did not write.

        For imports while nobody sends (`committed` notices the others): joins
        read the store again, imported messages included. True when something
        was forgotten. Only between batches (on the writer's thread): a batch
        committed but not yet fanned out is not from outside.
        """
        with self._lock:
            if newest_stored <= self._last_message_id:
                return False
            self._last_message_id = newest_stored
            self._forget_recent()
            return True

    def _forget_recent(self) -> None:
        for name, state in list(self._kept.items()):
            self._drop_recent(name, state)

    def _evict(self) -> None:
        while self._kept_bytes > self._kept_limit and self._kept:
            name, state = next(iter(self._kept.items()))
            self._drop_recent(name, state)

    def _drop_recent(self, name: str, state: RoomState) -> None:
        if state.recent is not None:
            del self._kept[name]
            self._kept_bytes -= state.recent_bytes
        state.recent = None
        state.recent_bytes = 0
