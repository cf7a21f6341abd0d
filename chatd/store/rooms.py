"""Rooms and membership."""

from __future__ import annotations

from sqlalchemy import func, select

from chatd.records import (
    RoomRecord,
    RoomSummary,
)
from chatd.store.base import (
    StoreBase,
    memberships,
    messages,
    room_changes,
    rooms,
    users,
)


class RoomStore(StoreBase):
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

    def topic_setter(self, room: str) -> tuple[str, int] | None:
        """Who set the room's topic last, and when (ms): the log's newest topic change."""
        query = (
            select(room_changes.c.username, room_changes.c.ts_ms)
            .join(rooms, rooms.c.id == room_changes.c.room_id)
            .where(rooms.c.name == room, room_changes.c.kind == "topic")
            .order_by(room_changes.c.position.desc())
            .limit(1)
        )
        with self._read() as connection:
            row = connection.execute(query).first()
        return None if row is None else (row[0], int(row[1]))

    def room_created_ms(self, room: str) -> int | None:
        """When the room was made (ms), for IRC's RPL_CREATIONTIME; None if there is none."""
        with self._read() as connection:
            found = connection.execute(select(rooms.c.created_ms).where(rooms.c.name == room))
            value = found.scalar()
        return None if value is None else int(value)
