"""Messages and the files they announce: history pages and who may fetch a file.

Storing them is the log's business (chatd/store/log.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select

from chatd.records import (
    FileAccess,
    FileInfo,
    Message,
    RoomRecord,
    UserRecord,
    dm_pair,
)
from chatd.store.base import (
    StoreBase,
    files,
    message_query,
    message_record,
    messages,
    rooms,
)


class MessageStore(StoreBase):
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

    def room_history(self, room: RoomRecord, limit: int, through: int) -> list[Message]:
        """The room's last `limit` messages as far as log position `through`, oldest first.

        What a joining member is shown: the messages its room's members have
        been sent (imported ones, which have no position, included); the
        later ones reach it as events.
        """
        logged = or_(messages.c.position.is_(None), messages.c.position <= through)
        return self._page(and_(messages.c.room_id == room.id, logged), None, None, limit)

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

    def last_id_before(
        self, ts_ms: int, room: RoomRecord | None = None, pair: tuple[int, int] | None = None
    ) -> int:
        """The newest id, in the room or between the pair of user ids, of a message older than
        `ts_ms`; 0 when there is none.

        What a time becomes as a place in id order (IRC's `timestamp=` references):
        stored messages' times follow their ids, but for imported ones, and the
        newest first is the common case (a client catching up), so the scan is short.
        """
        if room is not None:
            where = messages.c.room_id == room.id
        else:
            assert pair is not None
            where = messages.c.dm_pair == dm_pair(*pair)
        query = (
            select(messages.c.id)
            .where(where, messages.c.ts_ms < ts_ms)
            .order_by(messages.c.id.desc())
            .limit(1)
        )
        with self._read() as connection:
            found = connection.execute(query).scalar()
        return int(found or 0)
