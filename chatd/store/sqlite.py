"""The Store on SQLite: one writer at a time, and the log's transactions through the driver.

SQLite has one writer at a time; queueing writers on a lock here is cheaper
than its busy loop. The log's transactions (every message, join, part and
topic change) run on one kept sqlite3 connection instead of through
SQLAlchemy: a one-message transaction costs about 0.13 ms of CPU that way,
0.5 ms the other. What they check and number is chatd/store/log.py's; this
is only how the statements run. The dialect is decided once, when the Store
is opened (`open_store`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from itertools import groupby
from typing import Any

from sqlalchemy import Connection

from chatd.diskspace import DiskAlarm
from chatd.records import NewFile
from chatd.searchtext import Term, fts5_query
from chatd.store.conversation_writes import ConversationWrites
from chatd.store.facade import Store
from chatd.store.log import CHANGE_ROW, MESSAGE_ROW, LogWriter


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


INSERT_MESSAGE = _insert("messages", MESSAGE_ROW)
# why: Python 3.11's sqlite3 binds None through its adapter lookup, about 1 us per value;
# the common message (in a room, no file) leaves its three empty columns out instead.
ROOM_TEXT_COLUMNS = ("room_id", "sender_id", "author", "text", "ts_ms", "position", "room_seq")
INSERT_ROOM_TEXT = _insert("messages", ROOM_TEXT_COLUMNS)
INSERT_CHANGE = _insert("room_changes", CHANGE_ROW)
INSERT_FILE = _insert("files", ("sha256", "size", "name", "mime", "uploader_id", "created_ms"))
# why: new messages go into the search index a batch at a time, a quarter of the cost of
# a trigger per row; edits and deletes are kept in step by triggers (migration 0006).
INDEX_NEW = (
    "INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages WHERE id BETWEEN ? AND ?"
)


def _is_room_text(row: tuple[Any, ...]) -> bool:
    """A MESSAGE_ROW of a room message without a file, a reply or a mention."""
    return row[3] is None and row[7] is None and row[9] is None and row[10] is None


class SqliteStore(Store):
    def __init__(self, url: str, disk: DiskAlarm | None = None) -> None:
        super().__init__(url, disk)
        self._write_lock = threading.Lock()
        self._raw: Any = None  # the kept connection of the log's transactions

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        super().close()

    def _turn(self) -> AbstractContextManager[object]:
        return self._write_lock

    def _search_source(self, terms: list[Term]) -> tuple[str, str, str, dict[str, Any]] | None:
        """The FTS5 table over messages.text, newest first by its rowid (the message id)."""
        return (
            "messages_fts JOIN messages m ON m.id = messages_fts.rowid",
            "messages_fts MATCH :query",
            "messages_fts.rowid",
            {"query": fts5_query(terms)},
        )

    def _index_imported(self, connection: Connection, ids: list[int]) -> None:
        """Imported messages go into the search index as the writer's do."""
        if ids:
            connection.exec_driver_sql(INDEX_NEW, (min(ids), max(ids)))

    def erase_traces(self) -> None:
        """After deletes: no trace of the deleted texts left in the database's files.

        The FTS5 index keeps a deleted row's words (and its delete marker
        repeats them) until its segments are merged into one; the WAL keeps
        old pages until a checkpoint truncates it. secure_delete (chatd/db.py)
        zeroes what is freed meanwhile.
        """
        with self._refusing_when_full(), self._write_lock:
            if self._raw is None:
                self._raw = self.engine.raw_connection()
            driver: sqlite3.Connection = self._raw.driver_connection
            driver.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _log_writer(self) -> Iterator[LogWriter]:
        """A write transaction on the kept driver connection."""
        with self._refusing_when_full(), self._write_lock:
            if self._raw is None:
                self._raw = self.engine.raw_connection()
            driver: sqlite3.Connection = self._raw.driver_connection
            cursor = driver.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteLogWriter(cursor)
                cursor.execute("COMMIT")
            except BaseException:
                # why: SQLite rolls back by itself after some errors (SQLITE_FULL among
                # them); a second ROLLBACK would fail and hide the reason.
                if driver.in_transaction:
                    cursor.execute("ROLLBACK")
                raise
            finally:
                cursor.close()


class _SqliteLogWriter(ConversationWrites):
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        return self._cursor.execute(sql, params).fetchall()

    def _run(self, sql: str, params: dict[str, Any] | list[dict[str, Any]]) -> None:
        if isinstance(params, list):
            self._cursor.executemany(sql, params)
        else:
            self._cursor.execute(sql, params)

    def head(self) -> int:
        return int(self._cursor.execute("SELECT position FROM log_head").fetchone()[0])

    def rooms(self, names: set[str]) -> dict[str, tuple[int, str, int]]:
        marks = ", ".join("?" for _ in names)
        rows = self._cursor.execute(
            f"SELECT name, id, topic, last_seq FROM rooms WHERE name IN ({marks})", tuple(names)
        )
        return {name: (room_id, topic, seq) for name, room_id, topic, seq in rows}

    def create_room(self, name: str, ts: int) -> int:
        self._cursor.execute(
            "INSERT INTO rooms (name, topic, created_ms) VALUES (?, '', ?)", (name, ts)
        )
        room_id = self._cursor.lastrowid
        assert room_id is not None
        return room_id

    def members(self, room_ids: set[int], user_ids: set[int]) -> set[tuple[int, int]]:
        rooms = ", ".join("?" for _ in room_ids)
        users = ", ".join("?" for _ in user_ids)
        rows = self._cursor.execute(
            f"SELECT room_id, user_id FROM memberships "
            f"WHERE room_id IN ({rooms}) AND user_id IN ({users})",
            (*room_ids, *user_ids),
        )
        return {(room_id, user_id) for room_id, user_id in rows}

    def add_member(self, room_id: int, user_id: int, ts: int) -> None:
        self._cursor.execute(
            "INSERT INTO memberships (user_id, room_id, joined_ms) VALUES (?, ?, ?)",
            (user_id, room_id, ts),
        )

    def remove_member(self, room_id: int, user_id: int) -> None:
        self._cursor.execute(
            "DELETE FROM memberships WHERE room_id = ? AND user_id = ?", (room_id, user_id)
        )

    def set_topic(self, room_id: int, topic: str) -> None:
        self._cursor.execute("UPDATE rooms SET topic = ? WHERE id = ?", (topic, room_id))

    def insert_file(self, attachment: NewFile, uploader_id: int, ts: int) -> int:
        self._cursor.execute(
            INSERT_FILE,
            (attachment.sha256, attachment.size, attachment.name, attachment.mime, uploader_id, ts),
        )
        file_id = self._cursor.lastrowid
        assert file_id is not None
        return file_id

    def insert_messages(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Inside BEGIN IMMEDIATE no other writer interleaves and a new rowid is the
        largest so far plus one, so the rows' ids are the run ending at
        last_insert_rowid(); the count check makes sure of it."""
        cursor = self._cursor
        for room_text, run in groupby(rows, key=_is_room_text):
            if room_text:
                short = [(r[0], r[1], r[2], r[5], r[6], r[8], r[11]) for r in run]
                cursor.executemany(INSERT_ROOM_TEXT, short)
            else:
                cursor.executemany(INSERT_MESSAGE, list(run))
        last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
        first = last - len(rows) + 1
        found = cursor.execute(
            "SELECT count(*) FROM messages WHERE id BETWEEN ? AND ?", (first, last)
        ).fetchone()[0]
        if found != len(rows):
            raise RuntimeError("message ids of a batch are not contiguous")
        cursor.execute(INDEX_NEW, (first, last))
        return list(range(first, last + 1))

    def insert_changes(self, rows: list[tuple[Any, ...]]) -> None:
        self._cursor.executemany(INSERT_CHANGE, rows)

    def set_head(self, position: int) -> None:
        self._cursor.execute("UPDATE log_head SET position = ?", (position,))
