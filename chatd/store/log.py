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
from typing import Any

from msgspec import UNSET
from sqlalchemy import and_, delete, insert, select, update

from chatd.errors import ChatError
from chatd.log import Batch, Deleted, Edited, Entered, Left, Logged, Marked, Posted, Retitled
from chatd.records import (
    Message,
    NewChange,
    NewFile,
    NewJoin,
    NewMessage,
    RoomRecord,
    UserRecord,
    now_ms,
)
from chatd.store.base import (
    StoreBase,
    files,
    insert_message_rows,
    log_head,
    memberships,
    message_changes,
    message_query,
    message_record,
    messages,
    read_changes,
    room_changes,
    rooms,
    users,
)
from chatd.store.conversation_writes import CoreStatements
from chatd.store.plan import (
    CHANGE_ROW,
    MESSAGE_ROW,
    LogWriter,
    Outcome,
    _Plan,
    no_such_message,
    not_author,
    not_in_room,
)

__all__ = ["CHANGE_ROW", "MESSAGE_ROW", "LogWriter", "no_such_message", "not_author", "not_in_room"]


class LogStore(StoreBase):
    def append_log(
        self, changes: Sequence[NewChange], node: str = ""
    ) -> tuple[Batch, list[Outcome]]:
        """Store a batch in one transaction (one fsync): each change's entry, or its refusal.

        The Batch holds the entries in position order, for the sequencer and
        the bus; refused changes take no position.
        """
        ts = now_ms()
        with self._log_writer() as writer:
            plan = _Plan(writer, changes, ts)
            first = plan.position + 1
            for index, change in enumerate(changes):
                plan.take(index, change)
            plan.finish()
            if plan.position >= first:
                writer.set_head(plan.position)
        self._unreferenced.extend(plan.unreferenced)
        done = [outcome for outcome in plan.outcomes if outcome is not None]
        assert len(done) == len(changes)
        entries = sorted(
            [
                *(outcome for outcome in done if not isinstance(outcome, ChatError)),
                *plan.extra,
            ],
            key=_position,
        )
        return Batch(node, first, plan.position, entries), done

    def take_unreferenced(self) -> list[str]:
        """The sha256 of attachment bytes that deletes left without a file, since last asked."""
        taken, self._unreferenced = self._unreferenced, []
        return taken

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
        already, a mark_read that moved nothing, left no entry and change
        nothing). Messages, edits and deletes are read as the messages are
        now: an edit shows the newest text, an edit of a message deleted
        since is left out (its delete follows), a message deleted since
        comes as the placeholder.
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
            altered = connection.execute(
                message_query()
                .add_columns(message_changes.c.position, message_changes.c.kind)
                .where(
                    message_changes.c.message_id == messages.c.id,
                    message_changes.c.position.between(first, last),
                )
            ).all()
            marked = connection.execute(_marked_query(first, last)).all()
        entries: list[Logged] = [Posted(row[-1], message_record(row)) for row in posted]
        entries.extend(_change_entry(*row) for row in changed)
        entries.extend(entry for row in altered if (entry := _altered_entry(row)) is not None)
        entries.extend(
            Marked(position, user, room, peer, value)
            for position, user, room, peer, value in marked
        )
        entries.sort(key=_position)
        return entries

    @contextmanager
    def _log_writer(self) -> Iterator[LogWriter]:
        with self._write() as connection:
            yield _CoreLogWriter(connection, self.tsvector)


def _position(entry: Logged) -> int:
    return entry.position


def _altered_entry(row: Any) -> Logged | None:
    """An edit or delete read back: the message_query() row, then position and kind."""
    message = message_record(row)
    position, kind = row[-2], row[-1]
    if kind == "delete":
        to = None if message.to is UNSET else str(message.to)
        return Deleted(position, message.id, message.room, message.user, to)
    if message.deleted:
        return None
    return Edited(position, message)


def _marked_query(first: int, last: int) -> Any:
    peers = users.alias("peers")
    return (
        select(
            read_changes.c.position,
            users.c.username,
            rooms.c.name,
            peers.c.username,
            read_changes.c.last_read,
        )
        .select_from(
            read_changes.join(users, users.c.id == read_changes.c.user_id)
            .outerjoin(rooms, rooms.c.id == read_changes.c.room_id)
            .outerjoin(peers, peers.c.id == read_changes.c.peer_id)
        )
        .where(read_changes.c.position.between(first, last))
    )


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


class _CoreLogWriter(CoreStatements):
    """LogWriter through SQLAlchemy Core: every database chatd supports.

    On PostgreSQL (`tsvector`) each message's row also gets its search
    column, made from its text here (chatd/searchtext.py).
    """

    def head(self) -> int:
        return int(self._connection.execute(select(log_head.c.position)).scalar_one())

    def rooms(self, names: set[str]) -> dict[str, tuple[int, str, int]]:
        rows = self._connection.execute(
            select(rooms.c.name, rooms.c.id, rooms.c.topic, rooms.c.last_seq).where(
                rooms.c.name.in_(names)
            )
        )
        return {name: (room_id, topic, seq) for name, room_id, topic, seq in rows}

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
        values = [dict(zip(MESSAGE_ROW, row, strict=True)) for row in rows]
        return insert_message_rows(self._connection, values, self.tsvector)

    def insert_changes(self, rows: list[tuple[Any, ...]]) -> None:
        values = [dict(zip(CHANGE_ROW, row, strict=True)) for row in rows]
        self._connection.execute(insert(room_changes), values)

    def set_head(self, position: int) -> None:
        self._connection.execute(update(log_head).values(position=position))
