"""room ordinals

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 11:30:00.000000

`unread` counts a room's messages above a read marker by subtraction: each
room message gets its place in its room (room_seq: 1, 2, 3, ... in id
order, direct messages none), each room keeps the last one handed out
(rooms.last_seq), both given by whoever stores the message, in the write
transaction (writers take turns, chatd/db.py). The room index trades
sender_id and deleted (the walks that needed them are gone) for room_seq,
so the ordinal at a marker is one index lookup; two small partial indexes
hold what the subtraction must correct for: deleted messages, and imported
ones (the only messages that can be a user's own above the user's marker).
Without deleted in the room index SQLite's planner, which has no statistics,
counts the deleted messages from their own index rather than walking the
room's. Existing messages are numbered here. Written by hand: autogenerate
does not compare an index's WHERE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IS_DELETED = sa.text("deleted")
IS_IMPORTED = sa.text("position IS NULL")


def upgrade() -> None:
    # why: plain ALTER TABLE on both databases; a batch copy of messages on SQLite would
    # drop the search index's triggers (migration 0006).
    op.add_column("messages", sa.Column("room_seq", sa.BigInteger(), nullable=True))
    op.add_column(
        "rooms", sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.execute(
        "UPDATE messages SET room_seq = numbered.n FROM "
        "(SELECT id, ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY id) AS n "
        "FROM messages WHERE room_id IS NOT NULL) AS numbered "
        "WHERE messages.id = numbered.id"
    )
    op.execute(
        "UPDATE rooms SET last_seq = COALESCE("
        "(SELECT MAX(m.room_seq) FROM messages m WHERE m.room_id = rooms.id), 0)"
    )
    op.drop_index("ix_messages_room_id_id", table_name="messages")
    op.create_index(
        "ix_messages_room_id_id",
        "messages",
        ["room_id", "id", "room_seq"],
        unique=False,
    )
    op.create_index(
        "ix_messages_room_id_deleted",
        "messages",
        ["room_id", "id"],
        unique=False,
        sqlite_where=IS_DELETED,
        postgresql_where=IS_DELETED,
    )
    op.create_index(
        "ix_messages_room_id_imported",
        "messages",
        ["room_id", "sender_id", "id", "deleted"],
        unique=False,
        sqlite_where=IS_IMPORTED,
        postgresql_where=IS_IMPORTED,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_room_id_imported", table_name="messages")
    op.drop_index("ix_messages_room_id_deleted", table_name="messages")
    op.drop_index("ix_messages_room_id_id", table_name="messages")
    op.create_index("ix_messages_room_id_id", "messages", ["room_id", "id", "sender_id", "deleted"])
    # why: SQLite (3.35+) and PostgreSQL both drop a column in place; see upgrade.
    op.execute("ALTER TABLE rooms DROP COLUMN last_seq")
    op.execute("ALTER TABLE messages DROP COLUMN room_seq")
