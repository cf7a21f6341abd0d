"""Tables, row helpers and the connection handling shared by every part of `Store`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, cast

from msgspec import UNSET
from sqlalchemy import Column, Connection, Engine, MetaData, Table, insert, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.types import TypeDecorator

from chatd.db import WRITE_OPTION, create_db_engine
from chatd.diskspace import DiskAlarm, is_storage_full
from chatd.mentions import split_mentions
from chatd.models import (
    BlobChunk,
    DirectConversation,
    File,
    LogHead,
    Membership,
    MessageChange,
    ReadChange,
    Room,
    RoomChange,
    RoomMarker,
    RoomMention,
    User,
)
from chatd.models import Message as MessageRow
from chatd.names import format_ts
from chatd.records import (
    FileInfo,
    Message,
    NewFile,
    UserRecord,
)
from chatd.searchtext import tsvector_literal

# why: declarative models type __table__ as a FromClause; these are Tables.
users = cast(Table, User.__table__)
rooms = cast(Table, Room.__table__)
memberships = cast(Table, Membership.__table__)
messages = cast(Table, MessageRow.__table__)
files = cast(Table, File.__table__)
log_head = cast(Table, LogHead.__table__)
room_changes = cast(Table, RoomChange.__table__)
blob_chunks = cast(Table, BlobChunk.__table__)
room_mentions = cast(Table, RoomMention.__table__)
room_markers = cast(Table, RoomMarker.__table__)
direct_conversations = cast(Table, DirectConversation.__table__)
message_changes = cast(Table, MessageChange.__table__)
read_changes = cast(Table, ReadChange.__table__)
recipients = users.alias("recipients")


class SearchVector(TypeDecorator[str]):
    """A tsvector given in its input syntax (chatd/searchtext.py), cast by PostgreSQL."""

    impl = TSVECTOR
    cache_ok = True

    def bind_expression(self, bindvalue: Any) -> Any:
        return sql_cast(bindvalue, TSVECTOR)


# why: PostgreSQL's messages has a search column the models leave out (each backend has
# its own index; migration 0006): inserts there go through this copy of the table.
messages_with_search = Table(
    "messages",
    MetaData(),
    *(Column(column.name, column.type, primary_key=column.primary_key) for column in messages.c),
    Column("search", SearchVector()),
)


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
    messages.c.reply_to,
    messages.c.mentions,
    messages.c.edited_ms,
    messages.c.deleted,
)
# The same columns as portable SQL, for statements written as text
# (chatd/store/conversation_writes.py, chatd/store/conversations.py).
MESSAGE_COLUMNS_SQL = (
    "m.id, r.name, m.author, m.text, m.ts_ms, u.username, f.id, f.name, f.size, "
    "f.mime, f.sha256, m.reply_to, m.mentions, m.edited_ms, m.deleted"
)
MESSAGE_JOINS_SQL = (
    "LEFT JOIN rooms r ON r.id = m.room_id "
    "LEFT JOIN users u ON u.id = m.recipient_id LEFT JOIN files f ON f.id = m.file_id"
)
MESSAGE_SELECT = f"SELECT {MESSAGE_COLUMNS_SQL} FROM messages m {MESSAGE_JOINS_SQL}"


def message_query() -> Any:
    return select(*_MESSAGE_COLUMNS).select_from(
        messages.outerjoin(rooms, rooms.c.id == messages.c.room_id)
        .outerjoin(recipients, recipients.c.id == messages.c.recipient_id)
        .outerjoin(files, files.c.id == messages.c.file_id)
    )


def message_record(row: Any) -> Message:
    """A row of message_query() (or MESSAGE_SELECT) as the wire's message."""
    to = UNSET if row[1] is not None else row[5]
    if row[14]:
        return Message(row[0], row[1], row[2], "", format_ts(row[4]), to, deleted=True)
    file = UNSET if row[6] is None else FileInfo(row[6], row[7], row[8], row[9], row[10])
    return Message(
        row[0],
        row[1],
        row[2],
        row[3],
        format_ts(row[4]),
        to,
        file,
        UNSET if row[11] is None else row[11],
        split_mentions(row[12]) or UNSET,
        UNSET if row[13] is None else format_ts(row[13]),
    )


def insert_message_rows(
    connection: Connection, rows: list[dict[str, Any]], tsvector: bool
) -> list[int]:
    """Insert message rows, in their order; their ids. `tsvector`: PostgreSQL's rows also
    get their search column, made from their text (chatd/searchtext.py)."""
    table = messages
    if tsvector:
        table = messages_with_search
        for row in rows:
            row["search"] = tsvector_literal(row["text"])
    returning = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [int(i) for i in connection.execute(returning, rows).scalars()]


def file_fields(attachment: NewFile) -> tuple[str, int, str, str]:
    """FileInfo's fields after the id."""
    return attachment.name, attachment.size, attachment.mime, attachment.sha256


def user_record(row: Any) -> UserRecord:
    return UserRecord(row.id, row.username, row.password_hash, bool(row.disabled), row.created_ms)


class StoreBase:
    """The connection handling every part of the Store shares."""

    def __init__(self, url: str, disk: DiskAlarm | None = None) -> None:
        self.url = url
        self.disk = disk or DiskAlarm()
        self.engine: Engine = create_db_engine(url)
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})
        # PostgreSQL's messages have a search column to fill (migration 0006); decided once
        self.tsvector = self.engine.dialect.name == "postgresql"
        # sha256 of attachment bytes deletes left unreferenced, for the writer to remove
        self._unreferenced: list[str] = []

    def close(self) -> None:
        self.engine.dispose()

    def _index_imported(self, connection: Connection, ids: list[int]) -> None:
        """New messages stored outside the log (imports) into the search index: on
        PostgreSQL their rows carry it already; chatd/store/sqlite.py fills FTS5."""

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._refusing_when_full(), self._turn(), self._writer.begin() as connection:
            yield connection

    def _turn(self) -> AbstractContextManager[object]:
        """Held around every write transaction: nothing here (the database orders writers)."""
        return nullcontext()

    @contextmanager
    def _refusing_when_full(self) -> Iterator[None]:
        """A write transaction that failed for lack of space becomes storage_full."""
        try:
            yield
        except Exception as exc:
            if is_storage_full(exc):
                raise self.disk.refusal(exc) from None
            raise
        self.disk.wrote()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection
