"""Messages and the files they announce: the group-commit insert and history pages."""

from __future__ import annotations

from collections.abc import Sequence
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
    StoreBase,
    file_fields,
    files,
    message_params,
    message_query,
    message_record,
    messages,
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
        stored_files, ids = self._append(batch, ts)
        return StoredBatch(ts, ids, stored_files)

    def _append(
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
