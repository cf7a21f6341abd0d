"""Appending to the log: a batch of messages and room changes in one transaction.

Every change in a batch is checked against the database as it stands at
that point of the batch (a `part` before a `send` of the same user makes the
send `not_in_room`; a `join` before it lets it through), takes the next
position, and is stored; the log's head moves once. The checking and
numbering is written once, here; a `LogWriter` does the statements, through
SQLAlchemy Core (any database) or, on SQLite, the driver itself
(chatd/store/sqlite.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection, and_, delete, insert, select, update

from chatd.errors import ChatError, ErrorCode
from chatd.log import Batch, Entered, Left, Logged, Posted, Retitled
from chatd.names import format_ts
from chatd.records import (
    FileInfo,
    Message,
    NewChange,
    NewFile,
    NewJoin,
    NewMessage,
    NewPart,
    NewTopic,
    RoomRecord,
    UserRecord,
    dm_pair,
    now_ms,
)
from chatd.store.base import (
    StoreBase,
    file_fields,
    files,
    log_head,
    memberships,
    message_query,
    message_record,
    messages,
    room_changes,
    rooms,
)

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
)
CHANGE_ROW = ("position", "room_id", "kind", "username", "topic", "ts_ms")


class LogWriter(Protocol):
    """The statements of one log transaction; their order and their checks are the caller's."""

    def head(self) -> int: ...

    def rooms(self, names: set[str]) -> dict[str, tuple[int, str]]: ...

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


def not_in_room(room: str) -> ChatError:
    return ChatError(ErrorCode.NOT_IN_ROOM, f"you are not in #{room}")


class _Plan:
    """One batch being checked and numbered: rooms and memberships as the batch leaves them."""

    def __init__(self, writer: LogWriter, changes: Sequence[NewChange], ts: int) -> None:
        self.writer = writer
        self.ts = ts
        names = {change.room for change in changes if change.room is not None}
        self.rooms = writer.rooms(names) if names else {}
        user_ids = {_actor(change).id for change in changes if change.room is not None}
        room_ids = {room_id for room_id, _topic in self.rooms.values()}
        self.members = writer.members(room_ids, user_ids) if room_ids else set()
        self.position = writer.head()
        self.messages: list[tuple[int, NewMessage, FileInfo | None]] = []  # (index, new, file)
        self.message_rows: list[tuple[Any, ...]] = []
        self.change_rows: list[tuple[Any, ...]] = []

    def next_position(self) -> int:
        self.position += 1
        return self.position

    def member_room(self, room: str, user_id: int) -> tuple[int, str] | None:
        found = self.rooms.get(room)
        if found is None or (found[0], user_id) not in self.members:
            return None
        return found

    def join(self, change: NewJoin) -> Entered:
        found = self.rooms.get(change.room)
        if found is None:
            found = self.rooms[change.room] = (self.writer.create_room(change.room, self.ts), "")
        room_id, topic = found
        new = (room_id, change.user.id) not in self.members
        position = self.next_position()
        if new:
            self.members.add((room_id, change.user.id))
            self.writer.add_member(room_id, change.user.id, self.ts)
            self._change(position, room_id, "join", change.user.username, None)
        return Entered(position, room_id, change.room, topic, change.user.username, new)

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
        """Queue the message's row; None when it may be stored."""
        author = change.author
        room_id = recipient_id = pair = None
        if change.room is not None:
            found = self.member_room(change.room, author.id)
            if found is None:
                return not_in_room(change.room)
            room_id = found[0]
        else:
            assert change.recipient is not None
            recipient_id = change.recipient.id
            pair = dm_pair(author.id, recipient_id)
        file: FileInfo | None = None
        if change.attachment is not None:
            file_id = self.writer.insert_file(change.attachment, author.id, self.ts)
            file = FileInfo(file_id, *file_fields(change.attachment))
        self.messages.append((index, change, file))
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
            )
        )
        return None

    def _change(
        self, position: int, room_id: int, kind: str, username: str, topic: str | None
    ) -> None:
        self.change_rows.append((position, room_id, kind, username, topic, self.ts))


def _actor(change: NewChange) -> Any:
    return change.author if isinstance(change, NewMessage) else change.user


class LogStore(StoreBase):
    def append_log(
        self, changes: Sequence[NewChange], node: str = ""
    ) -> tuple[Batch, list[Outcome]]:
        """Store a batch in one transaction (one fsync): each change's entry, or its refusal.

        The Batch holds the entries in position order, for the sequencer and
        the bus; refused changes take no position.
        """
        ts = now_ms()
        outcomes: list[Outcome | None] = []
        with self._log_writer() as writer:
            plan = _Plan(writer, changes, ts)
            first = plan.position + 1
            for index, change in enumerate(changes):
                if isinstance(change, NewMessage):
                    outcomes.append(plan.message(index, change))
                elif isinstance(change, NewJoin):
                    outcomes.append(plan.join(change))
                elif isinstance(change, NewPart):
                    outcomes.append(plan.part(change))
                else:
                    outcomes.append(plan.topic(change))
            ids = writer.insert_messages(plan.message_rows) if plan.message_rows else []
            if plan.change_rows:
                writer.insert_changes(plan.change_rows)
            if plan.position >= first:
                writer.set_head(plan.position)
        stamp = format_ts(ts)
        for (index, new, file), message_id, row in zip(
            plan.messages, ids, plan.message_rows, strict=True
        ):
            outcomes[index] = Posted(row[-1], new.stored_as(message_id, stamp, file))
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(changes)
        entries = sorted(
            (outcome for outcome in done if not isinstance(outcome, ChatError)),
            key=_position,
        )
        return Batch(node, first, plan.position, entries), done

    def append_messages(self, batch: Sequence[NewMessage]) -> list[Message]:
        """Store messages in one transaction; the stored messages (refusals raise ChatError)."""
        _batch, outcomes = self.append_log(batch)
        stored = []
        for outcome in outcomes:
            if isinstance(outcome, ChatError):
                raise outcome
            assert isinstance(outcome, Posted)
            stored.append(outcome.message)
        return stored

    def append_message(self, author: UserRecord, text: str, **where: Any) -> Message:
        """Store one message; for tools and tests (the server batches)."""
        return self.append_messages([NewMessage(author, text, **where)])[0]

    def join(self, user: UserRecord, room: str) -> tuple[RoomRecord, bool]:
        """Make `user` a member of `room`, made if need be: (the room, whether newly).

        For tools and tests; the server's joins go through its writer.
        """
        _batch, (entered,) = self.append_log([NewJoin(user, room)])
        assert isinstance(entered, Entered)
        return RoomRecord(entered.room_id, entered.room, entered.topic), entered.new

    def log_head(self) -> int:
        with self._read() as connection:
            return int(connection.execute(select(log_head.c.position)).scalar_one())

    def log_between(self, first: int, last: int) -> list[Logged]:
        """The log's entries at positions first..last, in order, as the writer made them.

        For a node that missed a batch: every position up to the head is
        committed, so what this reads is all there is (a join by a member
        already left no entry, and changes nothing).
        """
        in_range = messages.c.position.between(first, last)
        with self._read() as connection:
            posted = connection.execute(
                message_query().add_columns(messages.c.position).where(in_range)
            ).all()
            changed = connection.execute(
                select(
                    room_changes.c.position,
                    room_changes.c.kind,
                    room_changes.c.username,
                    room_changes.c.topic,
                    rooms.c.id,
                    rooms.c.name,
                    rooms.c.topic,
                )
                .join(rooms, rooms.c.id == room_changes.c.room_id)
                .where(room_changes.c.position.between(first, last))
            ).all()
        entries: list[Logged] = [Posted(row[-1], message_record(row)) for row in posted]
        entries.extend(_change_entry(*row) for row in changed)
        entries.sort(key=_position)
        return entries

    @contextmanager
    def _log_writer(self) -> Iterator[LogWriter]:
        with self._write() as connection:
            yield _CoreLogWriter(connection)


def _position(entry: Logged) -> int:
    return entry.position


def _change_entry(
    position: int,
    kind: str,
    username: str,
    topic: str | None,
    room_id: int,
    room: str,
    room_topic: str,
) -> Logged:
    if kind == "join":
        return Entered(position, room_id, room, room_topic, username)
    if kind == "part":
        return Left(position, room, username)
    return Retitled(position, room, topic or "", username)


class _CoreLogWriter:
    """LogWriter through SQLAlchemy Core: every database chatd supports."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def head(self) -> int:
        return int(self._connection.execute(select(log_head.c.position)).scalar_one())

    def rooms(self, names: set[str]) -> dict[str, tuple[int, str]]:
        rows = self._connection.execute(
            select(rooms.c.name, rooms.c.id, rooms.c.topic).where(rooms.c.name.in_(names))
        )
        return {name: (room_id, topic) for name, room_id, topic in rows}

    def create_room(self, name: str, ts: int) -> int:
        return int(
            self._connection.execute(
                insert(rooms).values(name=name, topic="", created_ms=ts).returning(rooms.c.id)
            ).scalar_one()
        )

    def members(self, room_ids: set[int], user_ids: set[int]) -> set[tuple[int, int]]:
        rows = self._connection.execute(
            select(memberships.c.room_id, memberships.c.user_id).where(
                memberships.c.room_id.in_(room_ids), memberships.c.user_id.in_(user_ids)
            )
        )
        return {(room_id, user_id) for room_id, user_id in rows}

    def add_member(self, room_id: int, user_id: int, ts: int) -> None:
        self._connection.execute(
            insert(memberships).values(user_id=user_id, room_id=room_id, joined_ms=ts)
        )

    def remove_member(self, room_id: int, user_id: int) -> None:
        self._connection.execute(
            delete(memberships).where(
                and_(memberships.c.room_id == room_id, memberships.c.user_id == user_id)
            )
        )

    def set_topic(self, room_id: int, topic: str) -> None:
        self._connection.execute(update(rooms).where(rooms.c.id == room_id).values(topic=topic))

    def insert_file(self, attachment: NewFile, uploader_id: int, ts: int) -> int:
        return int(
            self._connection.execute(
                insert(files)
                .values(
                    sha256=attachment.sha256,
                    size=attachment.size,
                    name=attachment.name,
                    mime=attachment.mime,
                    uploader_id=uploader_id,
                    created_ms=ts,
                )
                .returning(files.c.id)
            ).scalar_one()
        )

    def insert_messages(self, rows: list[tuple[Any, ...]]) -> list[int]:
        returning = insert(messages).returning(messages.c.id, sort_by_parameter_order=True)
        values = [dict(zip(MESSAGE_ROW, row, strict=True)) for row in rows]
        return [int(i) for i in self._connection.execute(returning, values).scalars()]

    def insert_changes(self, rows: list[tuple[Any, ...]]) -> None:
        values = [dict(zip(CHANGE_ROW, row, strict=True)) for row in rows]
        self._connection.execute(insert(room_changes), values)

    def set_head(self, position: int) -> None:
        self._connection.execute(update(log_head).values(position=position))
