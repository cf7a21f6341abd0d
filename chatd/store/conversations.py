"""Conversation state as read: a message for the early checks, `unread`, and `search`.

`unread` answers from indexes, in one statement. A room's count is a
subtraction: every room message has its place in its room (room_seq, given
by the writer; rooms.last_seq is the newest), so the messages above a marker
number last_seq less the room_seq at the marker (one index lookup), less
those of them that do not count: deleted ones, and the user's own. Neither
needs a walk over the messages: deletes are rare and sit in a partial index
of their own, and a user's own message moves the user's marker to it
(PROTOCOL.md), so the only own messages above a marker are imported ones
(`chatd import` moves no marker), in a partial index of imported messages.
A member without a marker (none is made that way) is counted by walking
the room's messages; mentions (room_mentions by user and room) and direct
messages (by conversation, with sender_id and deleted in the index) are
counted by walking their index: each walk stops at UNREAD_CAP, never a scan
of the messages.

Search is each backend's own (`_search_source`): PostgreSQL's tsvector
column here, SQLite's FTS5 table in chatd/store/sqlite.py. Both get the
query as words (chatd/searchtext.py), never as syntax.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from chatd.records import Message, UserRecord, dm_pair
from chatd.replies import DirectUnread, RoomUnread
from chatd.searchtext import Term, tsquery_text
from chatd.store.base import MESSAGE_COLUMNS_SQL, MESSAGE_JOINS_SQL, StoreBase, message_record
from chatd.store.conversation_writes import CoreStatements, StoredMessage

# PROTOCOL.md: counts are exact up to 1000; 1000 means "1000 or more".
UNREAD_CAP = 1000

_ROOMS_UNREAD = f"""
SELECT r.name, k.last_read,
    COALESCE((SELECT MAX(m.id) FROM messages m WHERE m.room_id = r.id), 0),
    r.last_seq,
    (SELECT m.room_seq FROM messages m WHERE m.room_id = r.id AND m.id <= k.last_read
        ORDER BY m.id DESC LIMIT 1),
    (SELECT COUNT(*) FROM messages m
        WHERE m.room_id = r.id AND m.deleted AND m.id > k.last_read),
    (SELECT COUNT(*) FROM messages m
        WHERE m.room_id = r.id AND m.position IS NULL AND m.sender_id = :user
        AND m.id > k.last_read AND NOT m.deleted),
    CASE WHEN k.last_read IS NULL THEN (SELECT COUNT(*) FROM (SELECT 1 FROM messages m
        WHERE m.room_id = r.id
        AND (m.sender_id IS NULL OR m.sender_id <> :user) AND NOT m.deleted
        LIMIT {UNREAD_CAP}) AS u) END,
    (SELECT COUNT(*) FROM (SELECT 1 FROM room_mentions x
        WHERE x.user_id = :user AND x.room_id = r.id AND x.message_id > COALESCE(k.last_read, 0)
        LIMIT {UNREAD_CAP}) AS n)
FROM memberships ms JOIN rooms r ON r.id = ms.room_id
LEFT JOIN room_markers k ON k.user_id = ms.user_id AND k.room_id = ms.room_id
WHERE ms.user_id = :user
"""
_PAIR = (
    "CASE WHEN d.user_id < d.peer_id "
    "THEN CAST(d.user_id AS VARCHAR(20)) || ':' || CAST(d.peer_id AS VARCHAR(20)) "
    "ELSE CAST(d.peer_id AS VARCHAR(20)) || ':' || CAST(d.user_id AS VARCHAR(20)) END"
)
_DIRECT_UNREAD = f"""
SELECT p.username, d.last_read, d.last_id,
    (SELECT COUNT(*) FROM (SELECT 1 FROM messages m
        WHERE m.dm_pair = {_PAIR} AND m.id > d.last_read
        AND m.sender_id <> :user AND NOT m.deleted
        LIMIT {UNREAD_CAP}) AS u)
FROM direct_conversations d JOIN users p ON p.id = d.peer_id
WHERE d.user_id = :user ORDER BY d.last_id DESC
"""


def _room_unread(
    name: str,
    last_read: int | None,
    last_id: int,
    last_seq: int,
    seq_at_marker: int | None,
    deleted: int,
    own: int,
    walked: int | None,
    mentions: int,
) -> RoomUnread:
    """A room's entry from _ROOMS_UNREAD's row: its count by subtraction, capped."""
    if last_read is None:
        assert walked is not None
        return RoomUnread(name, 0, last_id, walked, mentions)
    above = last_seq - (seq_at_marker or 0)
    count = max(0, min(UNREAD_CAP, above - deleted - own))
    return RoomUnread(name, last_read, last_id, count, mentions)


class ConversationStore(StoreBase):
    def stored_message(self, message_id: int) -> StoredMessage | None:
        """A message and who may see it, for a handler's early checks (the writer's decide)."""
        with self._read() as connection:
            return CoreStatements(connection).stored_message(message_id)

    def unread(self, user: UserRecord) -> tuple[list[RoomUnread], list[DirectUnread]]:
        """Every room of the user (by name) and every direct conversation with a message
        (most recent first), with their markers and capped counts."""
        with self._read() as connection:
            rooms = connection.execute(text(_ROOMS_UNREAD), {"user": user.id}).all()
            direct = connection.execute(text(_DIRECT_UNREAD), {"user": user.id}).all()
        return (
            sorted((_room_unread(*row) for row in rooms), key=lambda entry: entry.room),
            [DirectUnread(name, read, last, count, count) for name, read, last, count in direct],
        )

    def search(
        self,
        user: UserRecord,
        terms: list[Term],
        *,
        room_id: int | None = None,
        peer: UserRecord | None = None,
        before: int | None = None,
        limit: int = 20,
    ) -> list[Message]:
        """Messages matching every term, newest first: in one conversation, or in the
        user's rooms now and their direct messages."""
        source = self._search_source(terms) if terms else None
        if source is None:
            return []
        tables, match, order, params = source
        params = {**params, "user": user.id, "limit": limit}
        conditions = [match]
        if room_id is not None:
            conditions.append("m.room_id = :room")
            params["room"] = room_id
        elif peer is not None:
            conditions.append("m.dm_pair = :pair")
            params["pair"] = dm_pair(user.id, peer.id)
        else:
            conditions.append(
                "(m.room_id IN (SELECT room_id FROM memberships WHERE user_id = :user) "
                "OR m.recipient_id = :user "
                "OR (m.sender_id = :user AND m.recipient_id IS NOT NULL))"
            )
        if before is not None:
            conditions.append(f"{order} < :before")
            params["before"] = before
        sql = (
            f"SELECT {MESSAGE_COLUMNS_SQL} FROM {tables} {MESSAGE_JOINS_SQL} "
            f"WHERE {' AND '.join(conditions)} ORDER BY {order} DESC LIMIT :limit"
        )
        with self._read() as connection:
            rows = connection.execute(text(sql), params).all()
        return [message_record(row) for row in rows]

    def erase_traces(self) -> None:
        """After deletes, on SQLite: see chatd/store/sqlite.py. PostgreSQL keeps a deleted
        text in the dead row version until VACUUM reclaims it (docs/operations.md)."""

    def _search_source(self, terms: list[Term]) -> tuple[str, str, str, dict[str, Any]] | None:
        """(FROM, match condition, id column, parameters) of a search; None: nothing can match.

        PostgreSQL's: the tsvector column chatd fills from each message's words.
        """
        query = tsquery_text(terms)
        if query is None:
            return None
        return "messages m", "m.search @@ CAST(:query AS tsquery)", "m.id", {"query": query}
