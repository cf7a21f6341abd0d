"""The statements of conversation state inside a log transaction, written once in portable SQL.

Read markers, mentions, direct conversations, edits and deletes are rare next
to messages, or coalesced per batch, so both log writers (SQLAlchemy Core on
any database, the driver itself on SQLite) run the same SQL text with named
parameters, which sqlite3 and SQLAlchemy's `text()` both take. What they
check and number is chatd/store/log.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, text

from chatd.records import Message
from chatd.searchtext import tsvector_literal
from chatd.store.base import MESSAGE_SELECT, message_record

# why: CASE rather than max()/GREATEST(), which only one of the two databases has.
_HIGHER = "CASE WHEN excluded.{c} > {t}.{c} THEN excluded.{c} ELSE {t}.{c} END"
UPSERT_ROOM_MARKER = (
    "INSERT INTO room_markers (user_id, room_id, last_read) VALUES (:user, :room, :value) "
    "ON CONFLICT (user_id, room_id) DO UPDATE SET last_read = "
    + _HIGHER.format(c="last_read", t="room_markers")
)
UPSERT_DIRECT = (
    "INSERT INTO direct_conversations (user_id, peer_id, last_id, last_read) "
    "VALUES (:user, :peer, :last_id, :last_read) "
    "ON CONFLICT (user_id, peer_id) DO UPDATE SET last_id = "
    + _HIGHER.format(c="last_id", t="direct_conversations")
    + ", last_read = "
    + _HIGHER.format(c="last_read", t="direct_conversations")
)
INSERT_MENTION = (
    "INSERT INTO room_mentions (user_id, room_id, message_id) VALUES (:user, :room, :message)"
)


class StoredMessage(NamedTuple):
    """A message as the log's checks need it: the wire's form and who may see it."""

    message: Message
    room_id: int | None
    sender_id: int | None
    recipient_id: int | None
    file_id: int | None
    deleted: bool


class ConversationWrites:
    """Mixed into a LogWriter, which supplies `_rows` and `_run` for its connection."""

    tsvector = False  # PostgreSQL: the writer also fills messages.search

    def _rows(self, sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    def _run(self, sql: str, params: dict[str, Any] | list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _scalar(self, sql: str, params: dict[str, Any]) -> Any:
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    def stored_message(self, message_id: int) -> StoredMessage | None:
        rows = self._rows(
            MESSAGE_SELECT.replace("SELECT ", "SELECT m.room_id, m.sender_id, m.recipient_id, ", 1)
            + " WHERE m.id = :id",
            {"id": message_id},
        )
        if not rows:
            return None
        row = rows[0]
        record = message_record(row[3:])
        return StoredMessage(record, row[0], row[1], row[2], row[9], bool(row[17]))

    def users_by_keys(self, keys: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Registered users among username keys: key -> (id, username as registered)."""
        wanted = list(keys)
        marks = ", ".join(f":k{i}" for i in range(len(wanted)))
        rows = self._rows(
            f"SELECT username_key, id, username FROM users WHERE username_key IN ({marks})",
            {f"k{i}": key for i, key in enumerate(wanted)},
        )
        return {key: (user_id, name) for key, user_id, name in rows}

    def newest_in_room(self, room_id: int) -> int:
        value = self._scalar(
            "SELECT MAX(id) FROM messages WHERE room_id = :room", {"room": room_id}
        )
        return int(value or 0)

    def room_marker(self, user_id: int, room_id: int) -> int | None:
        value = self._scalar(
            "SELECT last_read FROM room_markers WHERE user_id = :user AND room_id = :room",
            {"user": user_id, "room": room_id},
        )
        return None if value is None else int(value)

    def direct_marker(self, user_id: int, peer_id: int) -> tuple[int, int]:
        """(last_read, last_id) of the user's side of a conversation; (0, 0) without messages."""
        rows = self._rows(
            "SELECT last_read, last_id FROM direct_conversations "
            "WHERE user_id = :user AND peer_id = :peer",
            {"user": user_id, "peer": peer_id},
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def raise_room_markers(self, rows: list[tuple[int, int, int]]) -> None:
        """(user, room, value): each marker becomes value if that is higher (or is made)."""
        self._run(UPSERT_ROOM_MARKER, [{"user": u, "room": r, "value": v} for u, r, v in rows])

    def raise_direct(self, rows: list[tuple[int, int, int, int]]) -> None:
        """(user, peer, last_id, last_read) of conversation sides, each raised, never lowered."""
        self._run(
            UPSERT_DIRECT,
            [{"user": u, "peer": p, "last_id": i, "last_read": r} for u, p, i, r in rows],
        )

    def add_mentions(self, rows: list[tuple[int, int, int]]) -> None:
        """(user, room, message) rows of room_mentions."""
        self._run(INSERT_MENTION, [{"user": u, "room": r, "message": m} for u, r, m in rows])

    def set_text(self, message_id: int, text: str, mentions: str | None, edited_ms: int) -> None:
        search = ", search = CAST(:doc AS tsvector)" if self.tsvector else ""
        self._run(
            "UPDATE messages SET text = :text, mentions = :mentions, edited_ms = :edited"
            f"{search} WHERE id = :id",
            {
                "id": message_id,
                "text": text,
                "mentions": mentions,
                "edited": edited_ms,
                "doc": tsvector_literal(text),
            },
        )
        self._run("DELETE FROM room_mentions WHERE message_id = :id", {"id": message_id})

    def erase(self, message_id: int, file_id: int | None) -> str | None:
        """Delete a message for good: its text, caption, mentions and file row.

        Returns the sha256 of the attachment's bytes when no file row refers
        to them any more (the caller removes them after the commit).
        """
        search = ", search = NULL" if self.tsvector else ""
        self._run(
            "UPDATE messages SET text = '', deleted = TRUE, mentions = NULL, edited_ms = NULL, "
            f"file_id = NULL{search} WHERE id = :id",
            {"id": message_id},
        )
        self._run("DELETE FROM room_mentions WHERE message_id = :id", {"id": message_id})
        if file_id is None:
            return None
        if self._scalar("SELECT 1 FROM messages WHERE file_id = :f LIMIT 1", {"f": file_id}):
            return None
        sha = self._scalar("SELECT sha256 FROM files WHERE id = :f", {"f": file_id})
        self._run("DELETE FROM files WHERE id = :f", {"f": file_id})
        if sha is None or self._scalar(
            "SELECT 1 FROM files WHERE sha256 = :sha LIMIT 1", {"sha": sha}
        ):
            return None
        return str(sha)

    def set_last_seqs(self, rows: list[tuple[int, int]]) -> None:
        """(room, last_seq): the last room_seq handed out in each room."""
        self._run(
            "UPDATE rooms SET last_seq = :seq WHERE id = :room",
            [{"room": room_id, "seq": seq} for room_id, seq in rows],
        )

    def set_direct_read(self, user_id: int, peer_id: int, value: int) -> None:
        self._run(
            "UPDATE direct_conversations SET last_read = :value "
            "WHERE user_id = :user AND peer_id = :peer",
            {"user": user_id, "peer": peer_id, "value": value},
        )

    def log_message_changes(self, rows: list[tuple[int, int, str, int]]) -> None:
        """(position, message, kind, ts) rows of message_changes."""
        self._run(
            "INSERT INTO message_changes (position, message_id, kind, ts_ms) "
            "VALUES (:position, :message, :kind, :ts)",
            [{"position": p, "message": m, "kind": k, "ts": t} for p, m, k, t in rows],
        )

    def log_read_changes(
        self, rows: list[tuple[int, int, int | None, int | None, int, int]]
    ) -> None:
        """(position, user, room, peer, last_read, ts) rows of read_changes."""
        self._run(
            "INSERT INTO read_changes (position, user_id, room_id, peer_id, last_read, ts_ms) "
            "VALUES (:position, :user, :room, :peer, :value, :ts)",
            [
                {"position": p, "user": u, "room": r, "peer": e, "value": v, "ts": t}
                for p, u, r, e, v, t in rows
            ],
        )


class CoreStatements(ConversationWrites):
    """The statements through SQLAlchemy Core, on a connection of any database."""

    def __init__(self, connection: Connection, tsvector: bool = False) -> None:
        self._connection = connection
        self.tsvector = tsvector

    def _rows(self, sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        return self._connection.execute(text(sql), params).all()

    def _run(self, sql: str, params: dict[str, Any] | list[dict[str, Any]]) -> None:
        self._connection.execute(text(sql), params)
