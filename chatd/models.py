"""The database schema as SQLAlchemy models; alembic migrations must match it.

Timestamps are integer milliseconds since the epoch: exact on every backend,
and exactly what the wire's RFC 3339 form with milliseconds carries.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# why: named constraints let alembic's batch mode alter them on SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# why: on SQLite only INTEGER PRIMARY KEY is the rowid alias that autoincrements.
Id = BigInteger().with_variant(Integer(), "sqlite")

# why: nearly every message is a room message without a file; partial indexes
# skip their NULLs, which made a batch insert 11.4 -> 9.4 us/row. Queries with
# `dm_pair = ?` / `file_id = ?` imply IS NOT NULL, so they still use them.
# alembic's autogenerate does not compare an index's WHERE: change these only
# with a migration, tests/test_migrations.py checks them against the database.
DM_PAIR_SET = text("dm_pair IS NOT NULL")
FILE_ID_SET = text("file_id IS NOT NULL")
# why: a user's direct messages in all conversations (the inbox a client catches up
# on), found from either side without touching room messages.
IS_DIRECT = text("recipient_id IS NOT NULL")
# why: imported messages have no place in the log (they were never news)
IS_LOGGED = text("position IS NOT NULL")
# why: what `unread` subtracts from a room's ordinals is found in small partial indexes:
# deleted messages, and imported ones (the only kind that can be a user's own above the
# user's read marker; chatd/store/conversations.py)
IS_DELETED = text("deleted")
IS_IMPORTED = text("position IS NULL")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    # why: uniqueness ignoring ASCII case that works the same on PostgreSQL.
    username_key: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(100))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Room(Base):
    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    topic: Mapped[str] = mapped_column(String(300), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # the room_seq of the room's newest message; 0 before its first
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    room_id: Mapped[int] = mapped_column(
        Id, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    joined_ms: Mapped[int] = mapped_column(BigInteger)


class File(Base):
    """An attachment's metadata; its bytes live in the blob directory under `sha256`."""

    __tablename__ = "files"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))
    mime: Mapped[str] = mapped_column(String(255))
    uploader_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Message(Base):
    """A room message (room_id set) or a direct message (recipient_id set).

    `author` keeps the name as shown, so imported messages whose author has
    no account keep it; `sender_id` is null for those.
    """

    __tablename__ = "messages"
    __table_args__ = (
        # why: covering for `unread`: the room_seq at a marker is one lookup. No deleted
        # here: SQLite (no statistics) would then count a room's deleted messages by
        # walking this index instead of ix_messages_room_id_deleted.
        Index("ix_messages_room_id_id", "room_id", "id", "room_seq"),
        Index(
            "ix_messages_room_id_deleted",
            "room_id",
            "id",
            sqlite_where=IS_DELETED,
            postgresql_where=IS_DELETED,
        ),
        Index(
            "ix_messages_room_id_imported",
            "room_id",
            "sender_id",
            "id",
            "deleted",
            sqlite_where=IS_IMPORTED,
            postgresql_where=IS_IMPORTED,
        ),
        Index(
            "ix_messages_dm_pair_id",
            "dm_pair",
            "id",
            "sender_id",
            "deleted",
            sqlite_where=DM_PAIR_SET,
            postgresql_where=DM_PAIR_SET,
        ),
        Index(
            "ix_messages_file_id",
            "file_id",
            sqlite_where=FILE_ID_SET,
            postgresql_where=FILE_ID_SET,
        ),
        Index(
            "ix_messages_dm_recipient_id",
            "recipient_id",
            "id",
            sqlite_where=IS_DIRECT,
            postgresql_where=IS_DIRECT,
        ),
        Index(
            "ix_messages_dm_sender_id",
            "sender_id",
            "id",
            sqlite_where=IS_DIRECT,
            postgresql_where=IS_DIRECT,
        ),
        Index(
            "ix_messages_position",
            "position",
            unique=True,
            sqlite_where=IS_LOGGED,
            postgresql_where=IS_LOGGED,
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    room_id: Mapped[int | None] = mapped_column(Id, ForeignKey("rooms.id"))
    sender_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"))
    author: Mapped[str] = mapped_column(String(32))
    recipient_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"))
    # why: "lower-id:higher-id" so both directions of a conversation share one index range.
    dm_pair: Mapped[str | None] = mapped_column(String(41))
    text: Mapped[str] = mapped_column(Text)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    file_id: Mapped[int | None] = mapped_column(Id, ForeignKey("files.id"))
    # the message's place in the log (LogHead); null for imported messages
    position: Mapped[int | None] = mapped_column(BigInteger)
    # the message this one answers, in the same conversation. No foreign key: adding
    # one would make SQLite copy the whole table in the migration.
    reply_to: Mapped[int | None] = mapped_column(BigInteger)
    # the registered usernames the text mentions, separated by spaces (chatd/mentions.py)
    mentions: Mapped[str | None] = mapped_column(Text)
    edited_ms: Mapped[int | None] = mapped_column(BigInteger)
    # a deleted message keeps its place (id, author, time) and loses its text for good
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # a room message's place in its room, 1, 2, 3, ... in id order (rooms.last_seq is the
    # newest), given in the transaction that stores it; null for direct messages
    room_seq: Mapped[int | None] = mapped_column(BigInteger)


class LogHead(Base):
    """The log's last position: every change that others must see, counted without gaps.

    Messages and room changes take their positions from this one row, in the
    same transaction that stores them, so positions follow commit order on
    every backend and across nodes: a node that has delivered position P has
    delivered everything before it, and one that sees a gap can read what is
    missing (chatd/sequencer.py).
    """

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class RoomChange(Base):
    """A join, part or topic change, at its place in the log."""

    __tablename__ = "room_changes"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    room_id: Mapped[int] = mapped_column(Id, ForeignKey("rooms.id"))
    kind: Mapped[str] = mapped_column(String(8))  # join, part or topic
    username: Mapped[str] = mapped_column(String(32))
    topic: Mapped[str | None] = mapped_column(String(300))
    ts_ms: Mapped[int] = mapped_column(BigInteger)


class BlobChunk(Base):
    """A piece of an attachment's bytes, for a cluster: every node reads them here.

    Chunked so that neither a write nor a `fetch` moves a whole 25 MiB
    value through one statement; keyed by content like the directory store.
    """

    __tablename__ = "blob_chunks"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RoomMention(Base):
    """A room message mentioning a user other than its author: what `unread` counts as mentions.

    Direct messages need none: there every unread message counts as a mention.
    """

    __tablename__ = "room_mentions"

    user_id: Mapped[int] = mapped_column(
        Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    room_id: Mapped[int] = mapped_column(Id, ForeignKey("rooms.id"), primary_key=True)
    message_id: Mapped[int] = mapped_column(
        Id, ForeignKey("messages.id"), primary_key=True, index=True
    )


class RoomMarker(Base):
    """A user's read marker in a room: the newest message id read there (never lower)."""

    __tablename__ = "room_markers"

    user_id: Mapped[int] = mapped_column(
        Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    room_id: Mapped[int] = mapped_column(Id, ForeignKey("rooms.id"), primary_key=True)
    last_read: Mapped[int] = mapped_column(BigInteger)


class DirectConversation(Base):
    """One side of a direct conversation that holds a message: its newest id and the read marker.

    Two rows per pair (one per side; one for notes to self), kept by the log's
    writer, so `unread` lists a user's conversations, most recent first,
    without grouping their messages.
    """

    __tablename__ = "direct_conversations"
    __table_args__ = (Index("ix_direct_conversations_user_id_last_id", "user_id", "last_id"),)

    user_id: Mapped[int] = mapped_column(
        Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    peer_id: Mapped[int] = mapped_column(
        Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_read: Mapped[int] = mapped_column(BigInteger)


class MessageChange(Base):
    """An edit or a delete, at its place in the log; the message row holds what it left."""

    __tablename__ = "message_changes"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id"))
    kind: Mapped[str] = mapped_column(String(8))  # edit or delete
    ts_ms: Mapped[int] = mapped_column(BigInteger)


class ReadChange(Base):
    """A read marker that moved (mark_read, a first join), at its place in the log.

    Exactly one of room_id and peer_id is set. A user's own message moves its
    marker too, but that needs no row: the message's own entry says it.
    """

    __tablename__ = "read_changes"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"))
    room_id: Mapped[int | None] = mapped_column(Id, ForeignKey("rooms.id"))
    peer_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"))
    last_read: Mapped[int] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
