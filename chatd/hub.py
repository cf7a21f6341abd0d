"""Rooms, membership and who is online, and the fan-out of events to connections.

The hub mirrors the stored membership in memory so that fan-out never reads
the database, and keeps each room's last messages once a join has read them
(up to KEPT_HISTORY_BYTES in all), so the next join reads none either. It
talks to connections only through `deliver(data)`, which never blocks, so
tests can use list-backed fakes.

Locks, in the order they may be taken:
1. `delivery_lock`: held by the message writer from a batch's commit to the
   end of its fan-out, and by join, part and topic around their change and
   reply, so every member sees ids ascending and a join's history meets the
   events after it. Holders may write to the database but never block on a
   socket: delivering only queues.
2. `Hub._lock`: guards the dicts below; held only for dict operations.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chatd.errors import ErrorCode
from chatd.names import username_key
from chatd.protocol import EncodedList, encode
from chatd.records import RoomRecord


class Peer(Protocol):
    """What the hub needs of a connection."""

    def deliver(self, data: bytes) -> None: ...

    def kick(self, code: ErrorCode, message: str) -> None: ...


# why: kept history is a cache; unbounded, every room joined since the start would hold
# up to history_size messages (as much as 50 x 16 KiB) for as long as the server runs.
KEPT_HISTORY_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class RoomState:
    record: RoomRecord
    topic: str
    members: dict[str, str] = field(default_factory=dict)  # username key -> username
    recent: deque[bytes] | None = None  # the last messages encoded, oldest first, once read
    recent_bytes: int = 0

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
    ) -> None:
        self._lock = threading.Lock()
        self._rooms: dict[str, RoomState] = {}
        self._online: dict[str, set[Peer]] = {}
        self._history_size = history_size
        self._kept: dict[str, RoomState] = {}  # rooms with kept history, least recently used first
        self._kept_bytes = 0
        self._kept_limit = kept_bytes
        self._last_message_id = last_message_id  # the newest message id this server knows of
        self.delivery_lock = threading.Lock()

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
        with self._lock:
            self._online.setdefault(username_key(username), set()).add(peer)

    def disconnect(self, username: str, peer: Peer) -> None:
        key = username_key(username)
        with self._lock:
            peers = self._online.get(key)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._online[key]

    def peers_of(self, username: str) -> list[Peer]:
        with self._lock:
            return list(self._online.get(username_key(username), ()))

    # rooms

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
            online = [name for key, name in everyone if key in self._online]
            return [name for _key, name in everyone], online

    # recent history (callers hold delivery_lock, so kept history and stored messages agree)

    def recent(self, room: str) -> EncodedList | None:
        """The room's last messages (message_body), oldest first, if kept; None: read the store."""
        with self._lock:
            state = self._rooms.get(room)
            if state is None or state.recent is None:
                return None
            self._kept[room] = self._kept.pop(room)  # now the most recently used
            return EncodedList(state.recent)

    def keep_recent(self, room: str, bodies: list[bytes]) -> None:
        """Keep what the store returned as the room's last messages (at most history_size).

        Kept history is bounded by KEPT_HISTORY_BYTES in all; past that the
        rooms whose history was read least recently forget theirs.
        """
        with self._lock:
            state = self._rooms.get(room)
            if state is None or not self._history_size:
                return
            self._drop_recent(room, state)
            state.recent = deque(bodies, maxlen=self._history_size)
            state.recent_bytes = sum(map(len, state.recent))
            self._kept[room] = state
            self._kept_bytes += state.recent_bytes
            self._evict()

    def stored(self, messages: Iterable[tuple[int, str | None, bytes]]) -> None:
        """Messages just committed, in id order, as (id, room or None, message_body).

        Each joins its room's kept history. An id that does not follow the
        last one means someone else stored messages in between (`chatd
        import` while the server runs): every kept history is forgotten then,
        and reloaded by the next join.
        """
        with self._lock:
            for message_id, room, body in messages:
                if message_id != self._last_message_id + 1:
                    self._forget_recent()
                self._last_message_id = max(self._last_message_id, message_id)
                state = self._rooms.get(room) if room else None
                if state is None or state.recent is None:
                    continue
                grown = len(body)
                if len(state.recent) == state.recent.maxlen:
                    grown -= len(state.recent[0])  # the append pushes the oldest out
                state.recent.append(body)
                state.recent_bytes += grown
                self._kept_bytes += grown
            self._evict()

    def check_newest(self, newest_stored: int) -> bool:
        """Forget every kept history if the store has messages this server did not write.

        For imports while nobody sends (`stored` notices the others). True
        when something was forgotten.
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

    # fan-out

    def room_peers(self, room: str) -> list[Peer]:
        """Every connection of every member of `room`."""
        return self._room_peers(room)

    def peers_of_users(self, usernames: Iterable[str]) -> list[Peer]:
        """Every connection of the named users, each once."""
        peers: dict[int, Peer] = {}
        for name in usernames:
            for peer in self.peers_of(name):
                peers[id(peer)] = peer
        return list(peers.values())

    def _room_peers(self, room: str) -> list[Peer]:
        with self._lock:
            state = self._rooms.get(room)
            if state is None:
                return []
            return [peer for key in state.members for peer in self._online.get(key, ())]

    def to_room(self, room: str, event: dict[str, Any], *, exclude: Peer | None = None) -> None:
        """Deliver `event` to every connection of every member of `room` but `exclude`."""
        self._fan_out(self._room_peers(room), event, exclude)

    def to_room_and_user(
        self, room: str, username: str, event: dict[str, Any], *, exclude: Peer
    ) -> None:
        """A membership change: the room's other members and the user's own other connections."""
        peers = {id(peer): peer for peer in self._room_peers(room)}
        peers.update((id(peer), peer) for peer in self.peers_of(username))
        self._fan_out(peers.values(), event, exclude)

    @staticmethod
    def _fan_out(peers: Iterable[Peer], event: dict[str, Any], exclude: Peer | None) -> None:
        data = encode(event)
        for peer in peers:
            if peer is not exclude:
                peer.deliver(data)
