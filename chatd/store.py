"""The storage facade: every database read and write of the server goes through `Store`.

Methods are named for what the server means (`append_message`,
`history_before`) and return frozen records, never ORM objects, so nothing
outside db.py, models.py and this module knows SQLAlchemy exists.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from chatd.db import WRITE_OPTION, create_db_engine, is_sqlite
from chatd.errors import ChatError, ErrorCode
from chatd.models import File, Membership, Message, Room, User
from chatd.names import username_key
from chatd.records import (
    FileAccess,
    FileRecord,
    MessageRecord,
    NewFile,
    NewMessage,
    RoomRecord,
    RoomSummary,
    UserRecord,
    dm_pair,
    now_ms,
)

users = User.__table__
rooms = Room.__table__
memberships = Membership.__table__
messages = Message.__table__
files = File.__table__
recipients = users.alias("recipients")


_MESSAGE_COLUMNS = (
    messages.c.id,
    rooms.c.name,
    messages.c.author,
    messages.c.text,
    messages.c.ts_ms,
    recipients.c.username,
    files.c.id,
    files.c.name,
    files.c.size,
    files.c.mime,
    files.c.sha256,
)


def _message_query() -> Any:
    return select(*_MESSAGE_COLUMNS).select_from(
        messages.outerjoin(rooms, rooms.c.id == messages.c.room_id)
        .outerjoin(recipients, recipients.c.id == messages.c.recipient_id)
        .outerjoin(files, files.c.id == messages.c.file_id)
    )


def _message(row: Any) -> MessageRecord:
    attached = None if row[6] is None else FileRecord(row[6], row[7], row[8], row[9], row[10])
    return MessageRecord(row[0], row[1], row[2], row[3], row[4], row[5], attached)


_MESSAGE_INSERT_COLUMNS = (
    "room_id",
    "sender_id",
    "author",
    "recipient_id",
    "dm_pair",
    "text",
    "ts_ms",
    "file_id",
)
_SQLITE_INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(_MESSAGE_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _MESSAGE_INSERT_COLUMNS)})"
)


_SQLITE_INSERT_FILE = (
    "INSERT INTO files (sha256, size, name, mime, uploader_id, created_ms) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _message_params(new: NewMessage, ts: int, stored: FileRecord | None) -> tuple[Any, ...]:
    """A message's values in _MESSAGE_INSERT_COLUMNS order."""
    return (
        None if new.room is None else new.room.id,
        new.author.id,
        new.author.username,
        None if new.recipient is None else new.recipient.id,
        None if new.recipient is None else dm_pair(new.author.id, new.recipient.id),
        new.text,
        ts,
        None if stored is None else stored.id,
    )


def _file_fields(attachment: NewFile) -> tuple[str, int, str, str]:
    """FileRecord's fields after the id."""
    return attachment.name, attachment.size, attachment.mime, attachment.sha256


def _user(row: Any) -> UserRecord:
    return UserRecord(row.id, row.username, row.password_hash, bool(row.disabled), row.created_ms)


class Store:
    """The server's database, opened from a URL whose schema is already current."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_db_engine(url)
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})
        # why: SQLite has one writer at a time; queueing here is cheaper than its busy loop.
        self._write_lock = threading.Lock() if is_sqlite(url) else None
        self._raw: Any = None  # the kept connection of _raw_write

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._write_lock is None:
            with self._writer.begin() as connection:
                yield connection
            return
        with self._write_lock, self._writer.begin() as connection:
            yield connection

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection

    # accounts

    def create_user(self, username: str, password_hash: str) -> UserRecord:
        """A new account; username_taken when the name exists in any case."""
        try:
            with self._write() as connection:
                user_id = connection.execute(
                    insert(users)
                    .values(
                        username=username,
                        username_key=username_key(username),
                        password_hash=password_hash,
                        disabled=False,
                        created_ms=now_ms(),
                    )
                    .returning(users.c.id)
                ).scalar_one()
        except IntegrityError:
            raise ChatError(ErrorCode.USERNAME_TAKEN, "that username is taken") from None
        return UserRecord(user_id, username, password_hash, False)

    def user_by_name(self, name: str) -> UserRecord | None:
        with self._read() as connection:
            row = connection.execute(
                select(users).where(users.c.username_key == username_key(name))
            ).first()
        return None if row is None else _user(row)

    def users(self) -> list[UserRecord]:
        """Every account, sorted by name ignoring case."""
        with self._read() as connection:
            rows = connection.execute(select(users).order_by(users.c.username_key)).all()
        return [_user(row) for row in rows]

    def disabled_usernames(self) -> list[str]:
        with self._read() as connection:
            return list(
                connection.execute(select(users.c.username).where(users.c.disabled)).scalars()
            )

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        with self._write() as connection:
            connection.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )

    def set_disabled(self, user_id: int, disabled: bool) -> None:
        with self._write() as connection:
            connection.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))

    # rooms and membership

    def room_by_name(self, name: str) -> RoomRecord | None:
        with self._read() as connection:
            row = connection.execute(
                select(rooms.c.id, rooms.c.name, rooms.c.topic).where(rooms.c.name == name)
            ).first()
        return None if row is None else RoomRecord(row.id, row.name, row.topic)

    def rooms_with_members(self) -> list[tuple[RoomRecord, list[str]]]:
        """Every room with its members' usernames: what the hub loads at start-up."""
        with self._read() as connection:
            room_rows = connection.execute(
                select(rooms.c.id, rooms.c.name, rooms.c.topic).order_by(rooms.c.name)
            ).all()
            member_rows = connection.execute(
                select(memberships.c.room_id, users.c.username).join(
                    users, users.c.id == memberships.c.user_id
                )
            ).all()
        members: dict[int, list[str]] = {}
        for room_id, username in member_rows:
            members.setdefault(room_id, []).append(username)
        return [
            (RoomRecord(row.id, row.name, row.topic), members.get(row.id, [])) for row in room_rows
        ]

    def memberships_of(self, user_id: int) -> list[str]:
        with self._read() as connection:
            return list(
                connection.execute(
                    select(rooms.c.name)
                    .join(memberships, memberships.c.room_id == rooms.c.id)
                    .where(memberships.c.user_id == user_id)
                    .order_by(rooms.c.name)
                ).scalars()
            )

    def join(self, user_id: int, room: str) -> tuple[RoomRecord, bool]:
        """Make the user a member, creating the room; True when it was not one yet."""
        with self._write() as connection:
            row = connection.execute(
                select(rooms.c.id, rooms.c.topic).where(rooms.c.name == room)
            ).first()
            if row is None:
                room_id = connection.execute(
                    insert(rooms)
                    .values(name=room, topic="", created_ms=now_ms())
                    .returning(rooms.c.id)
                ).scalar_one()
                record = RoomRecord(room_id, room, "")
            else:
                record = RoomRecord(row.id, room, row.topic)
            already = connection.execute(
                select(memberships.c.user_id).where(
                    memberships.c.user_id == user_id, memberships.c.room_id == record.id
                )
            ).first()
            if already is None:
                connection.execute(
                    insert(memberships).values(
                        user_id=user_id, room_id=record.id, joined_ms=now_ms()
                    )
                )
        return record, already is None

    def part(self, user_id: int, room_id: int) -> bool:
        """End a membership; False when there was none."""
        with self._write() as connection:
            result = connection.execute(
                memberships.delete().where(
                    memberships.c.user_id == user_id, memberships.c.room_id == room_id
                )
            )
        return result.rowcount > 0

    def set_topic(self, room_id: int, topic: str) -> None:
        with self._write() as connection:
            connection.execute(update(rooms).where(rooms.c.id == room_id).values(topic=topic))

    def room_summaries(self) -> list[RoomSummary]:
        """Every room, sorted by name, with its member and message counts."""
        member_counts = (
            select(memberships.c.room_id, func.count().label("n"))
            .group_by(memberships.c.room_id)
            .subquery()
        )
        message_counts = (
            select(messages.c.room_id, func.count().label("n"))
            .where(messages.c.room_id.is_not(None))
            .group_by(messages.c.room_id)
            .subquery()
        )
        query = (
            select(
                rooms.c.name,
                rooms.c.topic,
                func.coalesce(member_counts.c.n, 0),
                func.coalesce(message_counts.c.n, 0),
            )
            .outerjoin(member_counts, member_counts.c.room_id == rooms.c.id)
            .outerjoin(message_counts, message_counts.c.room_id == rooms.c.id)
            .order_by(rooms.c.name)
        )
        with self._read() as connection:
            return [RoomSummary(*row) for row in connection.execute(query)]

    # messages

    def append_message(
        self,
        author: UserRecord,
        text: str,
        *,
        room: RoomRecord | None = None,
        recipient: UserRecord | None = None,
        attachment: NewFile | None = None,
    ) -> MessageRecord:
        """Store one room or direct message (with its file); committed on return."""
        return self.append_messages([NewMessage(author, text, room, recipient, attachment)])[0]

    def append_messages(self, batch: Sequence[NewMessage]) -> list[MessageRecord]:
        """Store a batch of messages in one transaction (one fsync); ids follow the batch order."""
        ts = now_ms()
        append = self._append_portable if self._write_lock is None else self._append_sqlite
        stored_files, ids = append(batch, ts)
        return [
            MessageRecord(
                message_id,
                None if new.room is None else new.room.name,
                new.author.username,
                new.text,
                ts,
                None if new.recipient is None else new.recipient.username,
                stored,
            )
            for message_id, new, stored in zip(ids, batch, stored_files, strict=True)
        ]

    def _append_portable(
        self, batch: Sequence[NewMessage], ts: int
    ) -> tuple[list[FileRecord | None], list[int]]:
        with self._write() as connection:
            stored_files = [
                None if new.attachment is None else self._insert_file(connection, new, ts)
                for new in batch
            ]
            rows = [
                dict(zip(_MESSAGE_INSERT_COLUMNS, _message_params(new, ts, stored), strict=True))
                for new, stored in zip(batch, stored_files, strict=True)
            ]
            returning = insert(messages).returning(messages.c.id, sort_by_parameter_order=True)
            return stored_files, list(connection.execute(returning, rows).scalars())

    def _append_sqlite(
        self, batch: Sequence[NewMessage], ts: int
    ) -> tuple[list[FileRecord | None], list[int]]:
        """The group-commit path on SQLite: the driver directly, on one kept connection.

        Through SQLAlchemy a one-message transaction costs about 0.5 ms of CPU,
        through the sqlite3 module about 0.13 ms; the writer commits one
        transaction per batch, so this is most of its cost when traffic is
        light. Inside BEGIN IMMEDIATE no other writer can interleave and a new
        rowid is the largest so far plus one, so the batch's ids are the run
        ending at last_insert_rowid(); the count check makes sure of it.
        """
        with self._raw_write() as cursor:
            stored_files: list[FileRecord | None] = []
            for new in batch:
                attachment = new.attachment
                if attachment is None:
                    stored_files.append(None)
                    continue
                cursor.execute(
                    _SQLITE_INSERT_FILE,
                    (
                        attachment.sha256,
                        attachment.size,
                        attachment.name,
                        attachment.mime,
                        new.author.id,
                        ts,
                    ),
                )
                stored_files.append(FileRecord(cursor.lastrowid, *_file_fields(attachment)))
            cursor.executemany(
                _SQLITE_INSERT_MESSAGE,
                [_message_params(new, ts, f) for new, f in zip(batch, stored_files, strict=True)],
            )
            last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
            first = last - len(batch) + 1
            found = cursor.execute(
                "SELECT count(*) FROM messages WHERE id BETWEEN ? AND ?", (first, last)
            ).fetchone()[0]
            if found != len(batch):
                raise RuntimeError("message ids of a batch are not contiguous")
            return stored_files, list(range(first, last + 1))

    @contextmanager
    def _raw_write(self) -> Iterator[Any]:
        """A write transaction on the kept driver connection (SQLite only)."""
        assert self._write_lock is not None
        with self._write_lock:
            if self._raw is None:
                self._raw = self.engine.raw_connection()
            cursor = self._raw.driver_connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            else:
                cursor.execute("COMMIT")
            finally:
                cursor.close()

    @staticmethod
    def _insert_file(connection: Connection, new: NewMessage, ts: int) -> FileRecord:
        attachment = new.attachment
        assert attachment is not None
        file_id = connection.execute(
            insert(files)
            .values(
                sha256=attachment.sha256,
                size=attachment.size,
                name=attachment.name,
                mime=attachment.mime,
                uploader_id=new.author.id,
                created_ms=ts,
            )
            .returning(files.c.id)
        ).scalar_one()
        return FileRecord(file_id, *_file_fields(attachment))

    # files

    def file_access(self, file_id: int) -> FileAccess | None:
        """The file and the message that announced it; None when there is no such file."""
        query = (
            select(
                files.c.id,
                files.c.name,
                files.c.size,
                files.c.mime,
                files.c.sha256,
                rooms.c.name,
                messages.c.sender_id,
                messages.c.recipient_id,
            )
            .select_from(
                files.join(messages, messages.c.file_id == files.c.id).outerjoin(
                    rooms, rooms.c.id == messages.c.room_id
                )
            )
            .where(files.c.id == file_id)
            .order_by(messages.c.id)
            .limit(1)
        )
        with self._read() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return FileAccess(FileRecord(*row[:5]), row[5], (row[6], row[7]))

    def uploaded_bytes(self, user_id: int) -> int:
        """What a user's stored uploads add up to, for the upload quota."""
        with self._read() as connection:
            total = connection.execute(
                select(func.coalesce(func.sum(files.c.size), 0)).where(
                    files.c.uploader_id == user_id
                )
            ).scalar_one()
        return int(total)

    def history_before(
        self, room: RoomRecord, before: int | None, limit: int
    ) -> list[MessageRecord]:
        """The `limit` newest messages of the room with id < before, oldest first."""
        return self._page(messages.c.room_id == room.id, before, limit)

    def dm_history_before(
        self, a: UserRecord, b: UserRecord, before: int | None, limit: int
    ) -> list[MessageRecord]:
        """Direct messages between a and b, as history_before."""
        return self._page(messages.c.dm_pair == dm_pair(a.id, b.id), before, limit)

    def _page(self, where: Any, before: int | None, limit: int) -> list[MessageRecord]:
        condition = where if before is None else and_(where, messages.c.id < before)
        query = _message_query().where(condition).order_by(messages.c.id.desc()).limit(limit)
        with self._read() as connection:
            rows = connection.execute(query).all()
        return [_message(row) for row in reversed(rows)]

    # transcripts (chatd export / chatd import)

    # why: well under every backend's limit on bound parameters in one IN (...).
    _IN_CHUNK = 500

    def room_export(
        self, name: str, since_ms: int | None = None, until_ms: int | None = None
    ) -> tuple[RoomRecord, list[MessageRecord]] | None:
        """The room and its messages with since <= ts < until, in id order; None if no room.

        One read transaction, so the export is a consistent snapshot even
        while the server writes.
        """
        with self._read() as connection:
            row = connection.execute(
                select(rooms.c.id, rooms.c.name, rooms.c.topic).where(rooms.c.name == name)
            ).first()
            if row is None:
                return None
            condition = messages.c.room_id == row.id
            if since_ms is not None:
                condition = and_(condition, messages.c.ts_ms >= since_ms)
            if until_ms is not None:
                condition = and_(condition, messages.c.ts_ms < until_ms)
            rows = connection.execute(
                _message_query().where(condition).order_by(messages.c.id)
            ).all()
        return RoomRecord(row.id, row.name, row.topic), [_message(item) for item in rows]

    def import_messages(
        self, room: str, topic: str, items: Sequence[tuple[str, int, str]]
    ) -> tuple[int, int]:
        """Add (author, ts_ms, text) messages to `room`: (imported, already there).

        All or nothing, in one write transaction. The room is created, with
        `topic`, when it does not exist; an existing room keeps its topic (a
        running server holds it in memory). New ids follow the order given.
        A message is already there when the room holds one with the same
        author (any case), ts and text, counted as a multiset so that
        repeated messages survive a round trip and a second import adds
        nothing. No account is created; sender_id is set when the author has one.
        """
        with self._write() as connection:
            room_id = connection.execute(
                select(rooms.c.id).where(rooms.c.name == room)
            ).scalar_one_or_none()
            existing: Counter[tuple[str, int, str]] = Counter()
            if room_id is None:
                room_id = connection.execute(
                    insert(rooms)
                    .values(name=room, topic=topic, created_ms=now_ms())
                    .returning(rooms.c.id)
                ).scalar_one()
            elif items:
                stamps = [ts for _author, ts, _text in items]
                rows = connection.execute(
                    select(messages.c.author, messages.c.ts_ms, messages.c.text).where(
                        messages.c.room_id == room_id,
                        messages.c.ts_ms.between(min(stamps), max(stamps)),
                    )
                )
                existing.update((username_key(a), ts, text) for a, ts, text in rows)
            accounts = self._account_ids(connection, {author for author, _ts, _text in items})
            new_rows = []
            for author, ts, text in items:
                key = (username_key(author), ts, text)
                if existing[key] > 0:
                    existing[key] -= 1
                    continue
                new_rows.append(
                    {
                        "room_id": room_id,
                        "sender_id": accounts.get(username_key(author)),
                        "author": author,
                        "text": text,
                        "ts_ms": ts,
                    }
                )
            if new_rows:
                # why: an executemany inserts row by row, so ids follow the transcript's order.
                connection.execute(insert(messages), new_rows)
        return len(new_rows), len(items) - len(new_rows)

    @classmethod
    def _account_ids(cls, connection: Connection, authors: set[str]) -> dict[str, int]:
        """Username key -> account id, for the authors that have an account."""
        keys = sorted({username_key(author) for author in authors})
        found: dict[str, int] = {}
        for start in range(0, len(keys), cls._IN_CHUNK):
            rows = connection.execute(
                select(users.c.username_key, users.c.id).where(
                    users.c.username_key.in_(keys[start : start + cls._IN_CHUNK])
                )
            )
            found.update((key, user_id) for key, user_id in rows)
        return found
