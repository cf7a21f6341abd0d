"""Messages and the files they announce: the group-commit insert and history pages."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select

from chatd.records import (
    FileAccess,
    FileInfo,
    Message,
    NewFile,
    NewMessage,
    RoomRecord,
    StoredBatch,
    UserRecord,
    dm_pair,
    now_ms,
)
from chatd.store.base import (
    MESSAGE_INSERT_COLUMNS,
    SQLITE_INSERT_FILE,
    SQLITE_INSERT_MESSAGE,
    SQLITE_INSERT_ROOM_MESSAGE,
    StoreBase,
    file_fields,
    files,
    message_params,
    message_query,
    message_record,
    messages,
    room_message_params,
    rooms,
)


class MessageStore(StoreBase):
    # messages

    def append_message(
        self,
        author: UserRecord,
        text: str,
        *,
        room: RoomRecord | None = None,
        recipient: UserRecord | None = None,
        attachment: NewFile | None = None,
    ) -> Message:
        """Store one room or direct message (with its file); committed on return."""
        return self.append_messages([NewMessage(author, text, room, recipient, attachment)])[0]

    def append_messages(self, batch: Sequence[NewMessage]) -> list[Message]:
        """Store a batch of messages in one transaction (one fsync); ids follow the batch order."""
        return self.append_batch(batch).messages(list(batch))

    def append_batch(self, batch: Sequence[NewMessage]) -> StoredBatch:
        """As append_messages, without building records: the writer encodes messages itself."""
        ts = now_ms()
        append = self._append_portable if self._write_lock is None else self._append_sqlite
        stored_files, ids = append(batch, ts)
        return StoredBatch(ts, ids, stored_files)

    def _append_portable(
        self, batch: Sequence[NewMessage], ts: int
    ) -> tuple[list[FileInfo | None], list[int]]:
        with self._write() as connection:
            stored_files = [
                None if new.attachment is None else self._insert_file(connection, new, ts)
                for new in batch
            ]
            rows = [
                dict(zip(MESSAGE_INSERT_COLUMNS, message_params(new, ts, stored), strict=True))
                for new, stored in zip(batch, stored_files, strict=True)
            ]
            returning = insert(messages).returning(messages.c.id, sort_by_parameter_order=True)
            return stored_files, list(connection.execute(returning, rows).scalars())

    def _append_sqlite(
        self, batch: Sequence[NewMessage], ts: int
    ) -> tuple[list[FileInfo | None], list[int]]:
        """The group-commit path on SQLite: the driver directly, on one kept connection.

        Through SQLAlchemy a one-message transaction costs about 0.5 ms of CPU,
        through the sqlite3 module about 0.13 ms; the writer commits one
        transaction per batch, so this is most of its cost when traffic is
        light. Inside BEGIN IMMEDIATE no other writer can interleave and a new
        rowid is the largest so far plus one, so the batch's ids are the run
        ending at last_insert_rowid(); the count check makes sure of it. Runs
        of room messages without files take the shorter INSERT.
        """
        with self._raw_write() as cursor:
            stored_files: list[FileInfo | None] = []
            for new in batch:
                attachment = new.attachment
                if attachment is None:
                    stored_files.append(None)
                    continue
                cursor.execute(
                    SQLITE_INSERT_FILE,
                    (
                        attachment.sha256,
                        attachment.size,
                        attachment.name,
                        attachment.mime,
                        new.author.id,
                        ts,
                    ),
                )
                stored_files.append(FileInfo(cursor.lastrowid, *file_fields(attachment)))
            pairs = zip(batch, stored_files, strict=True)
            for room_text, run in groupby(pairs, key=lambda pair: pair[0].is_room_text):
                if room_text:
                    rows = [room_message_params(new, ts) for new, _ in run]
                    cursor.executemany(SQLITE_INSERT_ROOM_MESSAGE, rows)
                else:
                    rows = [message_params(new, ts, stored) for new, stored in run]
                    cursor.executemany(SQLITE_INSERT_MESSAGE, rows)
            last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
            first = last - len(batch) + 1
            found = cursor.execute(
                "SELECT count(*) FROM messages WHERE id BETWEEN ? AND ?", (first, last)
            ).fetchone()[0]
            if found != len(batch):
                raise RuntimeError("message ids of a batch are not contiguous")
            return stored_files, list(range(first, last + 1))

    @staticmethod
    def _insert_file(connection: Connection, new: NewMessage, ts: int) -> FileInfo:
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
        return FileInfo(file_id, *file_fields(attachment))

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
        return FileAccess(FileInfo(*row[:5]), row[5], (row[6], row[7]))

    def uploaded_bytes(self, user_id: int) -> int:
        """What a user's stored uploads add up to, for the upload quota."""
        with self._read() as connection:
            total = connection.execute(
                select(func.coalesce(func.sum(files.c.size), 0)).where(
                    files.c.uploader_id == user_id
                )
            ).scalar_one()
        return int(total)

    def newest_message_id(self) -> int:
        """The largest message id stored, 0 when there are none."""
        with self._read() as connection:
            return int(
                connection.execute(select(func.coalesce(func.max(messages.c.id), 0))).scalar_one()
            )

    def room_page(
        self, room: RoomRecord, before: int | None, limit: int, after: int | None = None
    ) -> list[Message]:
        """A page of the room's messages (see _page), oldest first."""
        return self._page(messages.c.room_id == room.id, before, after, limit)

    def conversation_page(
        self,
        a: UserRecord,
        b: UserRecord,
        before: int | None,
        limit: int,
        after: int | None = None,
    ) -> list[Message]:
        """Direct messages between a and b, as room_page."""
        return self._page(messages.c.dm_pair == dm_pair(a.id, b.id), before, after, limit)

    def inbox_page(
        self, user: UserRecord, before: int | None, limit: int, after: int | None = None
    ) -> list[Message]:
        """Every direct message to or from `user`, in all conversations, as room_page."""
        is_direct = messages.c.recipient_id.is_not(None)
        mine = or_(
            messages.c.recipient_id == user.id,
            and_(messages.c.sender_id == user.id, is_direct),
        )
        return self._page(mine, before, after, limit)

    def _page(self, where: Any, before: int | None, after: int | None, limit: int) -> list[Message]:
        """Up to `limit` messages with after < id < before, oldest first.

        Without `after` the newest such messages (paging back); with it the
        oldest (paging forward from what a client has seen).
        """
        if before is not None:
            where = and_(where, messages.c.id < before)
        if after is not None:
            where = and_(where, messages.c.id > after)
        order = messages.c.id.desc() if after is None else messages.c.id.asc()
        query = message_query().where(where).order_by(order).limit(limit)
        with self._read() as connection:
            rows = list(connection.execute(query))
        if after is None:
            rows.reverse()
        return [message_record(row) for row in rows]
