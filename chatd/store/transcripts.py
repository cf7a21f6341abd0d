"""Whole-room reads and all-or-nothing imports for `chatd export` / `chatd import`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from chatd.mentions import join_mentions, mention_keys
from chatd.names import username_key
from chatd.records import (
    Message,
    RoomRecord,
    now_ms,
)
from chatd.store.base import (
    StoreBase,
    insert_message_rows,
    message_query,
    message_record,
    messages,
    room_mentions,
    rooms,
    users,
)
from chatd.store.conversation_writes import CoreStatements


class TranscriptStore(StoreBase):
    # transcripts (chatd export / chatd import)

    # why: well under every backend's limit on bound parameters in one IN (...).
    _IN_CHUNK = 500

    def room_export(
        self, name: str, since_ms: int | None = None, until_ms: int | None = None
    ) -> tuple[RoomRecord, list[Message]] | None:
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
            # why: deleted messages are left out of transcripts (PROTOCOL.md)
            condition = and_(messages.c.room_id == row.id, ~messages.c.deleted)
            if since_ms is not None:
                condition = and_(condition, messages.c.ts_ms >= since_ms)
            if until_ms is not None:
                condition = and_(condition, messages.c.ts_ms < until_ms)
            rows = connection.execute(
                message_query().where(condition).order_by(messages.c.id)
            ).all()
        return RoomRecord(row.id, row.name, row.topic), [message_record(item) for item in rows]

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
        Mentions of registered users are found as for a sent message.
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
            named = self._mentioned(connection, [text for _author, _ts, text in items])
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
                        "mentions": join_mentions(
                            [named[k][1] for k in mention_keys(text) if k in named]
                        ),
                    }
                )
            if new_rows:
                self._insert_imported(connection, room_id, new_rows, named)
        return len(new_rows), len(items) - len(new_rows)

    def _insert_imported(
        self,
        connection: Connection,
        room_id: int,
        rows: list[dict[str, Any]],
        named: dict[str, tuple[int, str]],
    ) -> None:
        """The new rows in the transcript's order, with their search words, room mentions
        and places in the room (room_seq, after the room's last: writers take turns)."""
        last_seq = connection.execute(
            select(rooms.c.last_seq).where(rooms.c.id == room_id)
        ).scalar_one()
        for seq, row in enumerate(rows, start=last_seq + 1):
            row["room_seq"] = seq
        connection.execute(
            update(rooms).where(rooms.c.id == room_id).values(last_seq=last_seq + len(rows))
        )
        ids = insert_message_rows(connection, rows, self.tsvector)
        self._index_imported(connection, ids)
        mentions = [
            {"user_id": user_id, "room_id": room_id, "message_id": message_id}
            for row, message_id in zip(rows, ids, strict=True)
            for key in mention_keys(row["text"])
            if key in named and (user_id := named[key][0]) != row["sender_id"]
        ]
        if mentions:
            connection.execute(insert(room_mentions), mentions)

    @classmethod
    def _mentioned(cls, connection: Connection, texts: list[str]) -> dict[str, tuple[int, str]]:
        """Username key -> (id, username) of the registered users the texts may mention."""
        keys = sorted({key for text in texts for key in mention_keys(text)})
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(keys), cls._IN_CHUNK):
            found.update(
                CoreStatements(connection).users_by_keys(keys[start : start + cls._IN_CHUNK])
            )
        return found

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
