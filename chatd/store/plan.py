"""Checking and numbering a batch of the log: each change as the batch leaves the database.

Every change in a batch is checked against the database as it stands at
that point of the batch (a `part` before a `send` of the same user makes the
send `not_in_room`; a `join` before it lets it through; a `mark_read` after
a message sees that message), takes the next position, and is stored. The
checks are written once, here; a `LogWriter` does the statements
(chatd/store/log.py, chatd/store/sqlite.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from msgspec import UNSET
from msgspec.structs import replace

from chatd.errors import ChatError, ErrorCode
from chatd.log import Deleted, Edited, Entered, Left, Logged, Marked, Posted, Retitled
from chatd.mentions import join_mentions, mention_keys
from chatd.names import format_ts
from chatd.records import (
    FileInfo,
    NewChange,
    NewDelete,
    NewEdit,
    NewFile,
    NewJoin,
    NewMessage,
    NewPart,
    NewRead,
    NewTopic,
    UserRecord,
    dm_pair,
)
from chatd.store.base import file_fields
from chatd.store.conversation_writes import StoredMessage

Outcome = Logged | ChatError
# the columns of a stored message, in the order LogWriter.insert_messages takes them
MESSAGE_ROW = (
    "room_id",
    "sender_id",
    "author",
    "recipient_id",
    "dm_pair",
    "text",
    "ts_ms",
    "file_id",
    "position",
    "reply_to",
    "mentions",
    "room_seq",
)
CHANGE_ROW = ("position", "room_id", "kind", "username", "topic", "ts_ms")


class LogWriter(Protocol):
    """The statements of one log transaction; their order and their checks are the caller's.

    Besides these, the conversation statements of ConversationWrites.
    """

    def head(self) -> int: ...

    def rooms(self, names: set[str]) -> dict[str, tuple[int, str, int]]:
        """name -> (id, topic, last_seq) of the rooms that exist among `names`."""
        ...

    def create_room(self, name: str, ts: int) -> int: ...

    def members(self, room_ids: set[int], user_ids: set[int]) -> set[tuple[int, int]]: ...

    def add_member(self, room_id: int, user_id: int, ts: int) -> None: ...

    def remove_member(self, room_id: int, user_id: int) -> None: ...

    def set_topic(self, room_id: int, topic: str) -> None: ...

    def insert_file(self, attachment: NewFile, uploader_id: int, ts: int) -> int: ...

    def insert_messages(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Ids of the rows (MESSAGE_ROW order), in their order."""
        ...

    def insert_changes(self, rows: list[tuple[Any, ...]]) -> None: ...

    def set_head(self, position: int) -> None: ...

    def set_last_seqs(self, rows: list[tuple[int, int]]) -> None:
        """(room, last_seq) of the rooms this transaction stored messages in."""
        ...

    # ConversationWrites

    def stored_message(self, message_id: int) -> StoredMessage | None: ...

    def users_by_keys(self, keys: list[str]) -> dict[str, tuple[int, str]]: ...

    def newest_in_room(self, room_id: int) -> int: ...

    def room_marker(self, user_id: int, room_id: int) -> int | None: ...

    def direct_marker(self, user_id: int, peer_id: int) -> tuple[int, int]: ...

    def raise_room_markers(self, rows: list[tuple[int, int, int]]) -> None: ...

    def raise_direct(self, rows: list[tuple[int, int, int, int]]) -> None: ...

    def add_mentions(self, rows: list[tuple[int, int, int]]) -> None: ...

    def set_text(
        self, message_id: int, text: str, mentions: str | None, edited_ms: int
    ) -> None: ...

    def erase(self, message_id: int, file_id: int | None) -> str | None: ...

    def set_direct_read(self, user_id: int, peer_id: int, value: int) -> None: ...

    def log_message_changes(self, rows: list[tuple[int, int, str, int]]) -> None: ...

    def log_read_changes(
        self, rows: list[tuple[int, int, int | None, int | None, int, int]]
    ) -> None: ...


def not_in_room(room: str) -> ChatError:
    return ChatError(ErrorCode.NOT_IN_ROOM, f"you are not in #{room}")


def no_such_message(message_id: int) -> ChatError:
    return ChatError(ErrorCode.NO_SUCH_MESSAGE, f"there is no message {message_id} you can see")


def not_author(message_id: int) -> ChatError:
    return ChatError(ErrorCode.NOT_AUTHOR, f"message {message_id} is not yours")


class _Pending(NamedTuple):
    """A message row queued for the next insert, with what its entry and side rows need."""

    slot: int  # the change's index in the batch
    change: NewMessage
    file: FileInfo | None
    mentioned: list[tuple[int, str]]  # (id, username) of the registered users it mentions
    room_id: int | None


class _Plan:
    """One batch being checked and numbered: rooms and memberships as the batch leaves them.

    Message rows wait and go in together (`flush`); a change that must see
    them first (a read marker, a first join) flushes them.
    """

    def __init__(self, writer: LogWriter, changes: Sequence[NewChange], ts: int) -> None:
        self.writer = writer
        self.ts = ts
        self.stamp = format_ts(ts)
        names = {room for change in changes if (room := _room_of(change)) is not None}
        found = writer.rooms(names) if names else {}
        self.rooms = {name: (room_id, topic) for name, (room_id, topic, _s) in found.items()}
        # each room's last room_seq as the batch leaves it (writers take turns: chatd/db.py)
        self.seqs = {room_id: seq for room_id, _topic, seq in found.values()}
        self.seqs_moved: set[int] = set()
        user_ids = {_actor(change).id for change in changes if _room_of(change) is not None}
        room_ids = {room_id for room_id, _topic in self.rooms.values()}
        self.members = writer.members(room_ids, user_ids) if room_ids else set()
        # the (room, user) pairs whose membership `members` knows
        self.known = {(room_id, user_id) for room_id in room_ids for user_id in user_ids}
        self.position = writer.head()
        self.outcomes: list[Outcome | None] = [None] * len(changes)
        self.extra: list[Logged] = []  # entries that answer no change (a first join's marker)
        self.pending: list[_Pending] = []
        self.message_rows: list[tuple[Any, ...]] = []
        self.change_rows: list[tuple[Any, ...]] = []
        self.message_change_rows: list[tuple[int, int, str, int]] = []
        self.read_rows: list[tuple[int, int, int | None, int | None, int, int]] = []
        self.unreferenced: list[str] = []  # sha256 of attachment bytes nothing refers to now
        self._users: dict[str, tuple[int, str] | None] = {}

    def next_position(self) -> int:
        self.position += 1
        return self.position

    def take(self, index: int, change: NewChange) -> None:
        if isinstance(change, NewMessage):
            self.outcomes[index] = self.message(index, change)
        elif isinstance(change, NewJoin):
            self.outcomes[index] = self.join(change)
        elif isinstance(change, NewPart):
            self.outcomes[index] = self.part(change)
        elif isinstance(change, NewTopic):
            self.outcomes[index] = self.topic(change)
        elif isinstance(change, NewEdit):
            self.outcomes[index] = self.edit(change)
        elif isinstance(change, NewDelete):
            self.outcomes[index] = self.delete(change)
        else:
            self.outcomes[index] = self.mark(change)

    def is_member(self, room_id: int, user_id: int) -> bool:
        if (room_id, user_id) not in self.known:
            self.known.add((room_id, user_id))
            self.members |= self.writer.members({room_id}, {user_id})
        return (room_id, user_id) in self.members

    def member_room(self, room: str, user_id: int) -> tuple[int, str] | None:
        found = self.rooms.get(room)
        if found is None or (found[0], user_id) not in self.members:
            return None
        return found

    def join(self, change: NewJoin) -> Entered:
        found = self.rooms.get(change.room)
        if found is None:
            found = self.rooms[change.room] = (self.writer.create_room(change.room, self.ts), "")
            self.seqs[found[0]] = 0
        room_id, topic = found
        new = (room_id, change.user.id) not in self.members
        position = self.next_position()
        if new:
            self.members.add((room_id, change.user.id))
            self.writer.add_member(room_id, change.user.id, self.ts)
            self._change(position, room_id, "join", change.user.username, None)
            self._first_marker(change, room_id)
        return Entered(position, room_id, change.room, topic, change.user.username, new)

    def _first_marker(self, change: NewJoin, room_id: int) -> None:
        """A first join: the history it shows counts as read (PROTOCOL.md)."""
        if self.writer.room_marker(change.user.id, room_id) is not None:
            return  # joined before: the marker stays where it was
        self.flush()
        newest = self.writer.newest_in_room(room_id)
        self.writer.raise_room_markers([(change.user.id, room_id, newest)])
        if newest:
            position = self.next_position()
            self.read_rows.append((position, change.user.id, room_id, None, newest, self.ts))
            self.extra.append(Marked(position, change.user.username, change.room, None, newest))

    def part(self, change: NewPart) -> Outcome:
        found = self.member_room(change.room, change.user.id)
        if found is None:
            return not_in_room(change.room)
        room_id = found[0]
        self.members.discard((room_id, change.user.id))
        self.writer.remove_member(room_id, change.user.id)
        position = self.next_position()
        self._change(position, room_id, "part", change.user.username, None)
        return Left(position, change.room, change.user.username)

    def topic(self, change: NewTopic) -> Outcome:
        found = self.member_room(change.room, change.user.id)
        if found is None:
            return not_in_room(change.room)
        room_id = found[0]
        self.rooms[change.room] = (room_id, change.topic)
        self.writer.set_topic(room_id, change.topic)
        position = self.next_position()
        self._change(position, room_id, "topic", change.user.username, change.topic)
        return Retitled(position, change.room, change.topic, change.user.username)

    def message(self, index: int, change: NewMessage) -> ChatError | None:
        """Queue the message's row; None when it may be stored (its entry comes at flush)."""
        author = change.author
        room_id = recipient_id = pair = seq = None
        if change.room is not None:
            found = self.member_room(change.room, author.id)
            if found is None:
                return not_in_room(change.room)
            room_id = found[0]
        else:
            assert change.recipient is not None
            recipient_id = change.recipient.id
            pair = dm_pair(author.id, recipient_id)
        if change.reply_to is not None:
            target = self.writer.stored_message(change.reply_to)
            if target is None or (target.room_id, _pair_of(target)) != (room_id, pair):
                return no_such_message(change.reply_to)
        mentioned = self.mentioned(change.text)
        file: FileInfo | None = None
        if change.attachment is not None:
            file_id = self.writer.insert_file(change.attachment, author.id, self.ts)
            file = FileInfo(file_id, *file_fields(change.attachment))
        if room_id is not None:
            seq = self.seqs[room_id] = self.seqs[room_id] + 1
            self.seqs_moved.add(room_id)
        self.pending.append(_Pending(index, change, file, mentioned, room_id))
        self.message_rows.append(
            (
                room_id,
                author.id,
                author.username,
                recipient_id,
                pair,
                change.text,
                self.ts,
                None if file is None else file.id,
                self.next_position(),
                change.reply_to,
                join_mentions([name for _id, name in mentioned]),
                seq,
            )
        )
        return None

    def mentioned(self, text: str) -> list[tuple[int, str]]:
        """The registered users `text` mentions, in order: (id, username)."""
        keys = mention_keys(text)
        unknown = [key for key in keys if key not in self._users]
        if unknown:
            found = self.writer.users_by_keys(unknown)
            for key in unknown:
                self._users[key] = found.get(key)
        return [user for key in keys if (user := self._users[key]) is not None]

    def flush(self) -> None:
        """Insert the queued messages; their entries, mentions and their authors' markers."""
        if not self.pending:
            return
        ids = self.writer.insert_messages(self.message_rows)
        room_marks: dict[tuple[int, int], int] = {}
        sides: dict[tuple[int, int], tuple[int, int]] = {}  # (user, peer) -> (last_id, last_read)
        mention_rows = []
        for pending, message_id, row in zip(self.pending, ids, self.message_rows, strict=True):
            change = pending.change
            names = [name for _id, name in pending.mentioned]
            message = change.stored_as(message_id, self.stamp, pending.file, names)
            self.outcomes[pending.slot] = Posted(row[8], message)
            author = change.author.id
            if pending.room_id is not None:
                room_marks[(author, pending.room_id)] = message_id
                mention_rows += [
                    (user_id, pending.room_id, message_id)
                    for user_id, _name in pending.mentioned
                    if user_id != author
                ]
                continue
            assert change.recipient is not None
            peer = change.recipient.id
            sides[(author, peer)] = (message_id, message_id)  # one's own message is read
            if peer != author:
                sides[(peer, author)] = (message_id, sides.get((peer, author), (0, 0))[1])
        if room_marks:
            self.writer.raise_room_markers([(u, r, v) for (u, r), v in room_marks.items()])
        if sides:
            self.writer.raise_direct([(u, p, i, r) for (u, p), (i, r) in sides.items()])
        if mention_rows:
            self.writer.add_mentions(mention_rows)
        self.pending = []
        self.message_rows = []

    def _visible(self, user: UserRecord, message_id: int) -> StoredMessage | ChatError:
        """A message the user can see and that is not deleted, else no_such_message."""
        stored = self.writer.stored_message(message_id)
        if stored is None or stored.deleted:
            return no_such_message(message_id)
        if stored.room_id is not None:
            seen = self.is_member(stored.room_id, user.id)
        else:
            seen = user.id in (stored.sender_id, stored.recipient_id)
        return stored if seen else no_such_message(message_id)

    def _own(self, user: UserRecord, message_id: int) -> StoredMessage | ChatError:
        stored = self._visible(user, message_id)
        if isinstance(stored, StoredMessage) and stored.sender_id != user.id:
            return not_author(message_id)
        return stored

    def edit(self, change: NewEdit) -> Outcome:
        stored = self._own(change.user, change.message_id)
        if isinstance(stored, ChatError):
            return stored
        mentioned = self.mentioned(change.text)
        names = [name for _id, name in mentioned]
        self.writer.set_text(change.message_id, change.text, join_mentions(names), self.ts)
        if stored.room_id is not None:
            rows = [(u, stored.room_id, change.message_id) for u, _n in mentioned]
            if rows := [row for row in rows if row[0] != change.user.id]:
                self.writer.add_mentions(rows)
        position = self.next_position()
        self.message_change_rows.append((position, change.message_id, "edit", self.ts))
        message = replace(
            stored.message, text=change.text, mentions=names or UNSET, edited=self.stamp
        )
        return Edited(position, message)

    def delete(self, change: NewDelete) -> Outcome:
        stored = self._own(change.user, change.message_id)
        if isinstance(stored, ChatError):
            return stored
        sha = self.writer.erase(change.message_id, stored.file_id)
        if sha is not None:
            self.unreferenced.append(sha)
        position = self.next_position()
        self.message_change_rows.append((position, change.message_id, "delete", self.ts))
        message = stored.message
        to = None if message.to is UNSET else str(message.to)
        return Deleted(position, message.id, message.room, message.user, to)

    def mark(self, change: NewRead) -> Outcome:
        """Raise a read marker, never past the conversation's newest message at this point."""
        user = change.user
        room_id = peer_id = None
        self.flush()
        if change.room is not None:
            found = self.member_room(change.room, user.id)
            if found is None:
                return not_in_room(change.room)
            room_id = found[0]
            current = self.writer.room_marker(user.id, room_id) or 0
            newest = self.writer.newest_in_room(room_id)
        else:
            assert change.peer is not None
            peer_id = change.peer.id
            current, newest = self.writer.direct_marker(user.id, peer_id)
        value = min(change.message_id, newest)
        position = self.next_position()
        peer = None if change.peer is None else change.peer.username
        if value <= current:
            return Marked(position, user.username, change.room, peer, current, moved=False)
        if room_id is not None:
            self.writer.raise_room_markers([(user.id, room_id, value)])
        else:
            assert peer_id is not None
            self.writer.set_direct_read(user.id, peer_id, value)
        self.read_rows.append((position, user.id, room_id, peer_id, value, self.ts))
        return Marked(position, user.username, change.room, peer, value)

    def finish(self) -> None:
        """The rows that wait: messages, and the log's rows of every other change."""
        self.flush()
        if self.seqs_moved:
            self.writer.set_last_seqs(
                [(room_id, self.seqs[room_id]) for room_id in self.seqs_moved]
            )
        if self.change_rows:
            self.writer.insert_changes(self.change_rows)
        if self.message_change_rows:
            self.writer.log_message_changes(self.message_change_rows)
        if self.read_rows:
            self.writer.log_read_changes(self.read_rows)

    def _change(
        self, position: int, room_id: int, kind: str, username: str, topic: str | None
    ) -> None:
        self.change_rows.append((position, room_id, kind, username, topic, self.ts))


def _pair_of(stored: StoredMessage) -> str | None:
    if stored.recipient_id is None or stored.sender_id is None:
        return None
    return dm_pair(stored.sender_id, stored.recipient_id)


def _room_of(change: NewChange) -> str | None:
    """The room a change names, if it names one (edits and deletes name a message)."""
    return getattr(change, "room", None)


def _actor(change: NewChange) -> UserRecord:
    return change.author if isinstance(change, NewMessage) else change.user
