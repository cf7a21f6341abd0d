"""conversations

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00.000000

Conversation state (PROTOCOL.md, extension `conversations`): read markers
per room and per direct conversation, mentions, replies, edits and deletes
at their place in the log, and the full-text index. Existing members and
conversations start with everything read, so an upgrade does not greet
everyone with a thousand unread messages. The message indexes by room and by
conversation gain sender_id and deleted, so `unread` counts from them alone.

The search index is each backend's own and is kept out of the models (see
migrations/env.py): on SQLite an FTS5 table over messages.text (external
content, kept in step by triggers), on PostgreSQL a tsvector column the
application fills (chatd/searchtext.py) with a GIN index. Written by hand:
autogenerate does not compare an index's WHERE, nor see either.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatd.searchtext import tsvector_literal

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DM_PAIR_SET = sa.text("dm_pair IS NOT NULL")
# why: the PostgreSQL search column is filled this many rows at a time on upgrade.
FILL_BATCH = 5000

# SQLite: the index over messages.text. unicode61 with remove_diacritics 2 folds case
# and accents as chatd/searchtext.py folds queries. No prefix indexes: prefix='1 2' made
# durable ingest 55% slower (docs/benchmarks.md), against 11-14% without; no column
# sizes either (nothing ranks by them).
FTS5_TABLE = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    "text, content='messages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2', columnsize=0)"
)
# External content does not keep itself. New rows are indexed by whoever inserts them,
# a batch at a time (chatd/store/sqlite.py: one INSERT ... SELECT per batch costs a
# quarter of a trigger per row); these keep edits and deletes in step, and never index
# a deleted text (what FTS5 was told at insert is exactly what it is told to remove).
FTS5_TRIGGERS = (
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF text, deleted ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, text)
            SELECT 'delete', old.id, old.text WHERE NOT old.deleted;
        INSERT INTO messages_fts (rowid, text) SELECT new.id, new.text WHERE NOT new.deleted;
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN NOT old.deleted BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
)


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_to", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("mentions", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("edited_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.drop_index("ix_messages_room_id_id")
        batch_op.create_index(
            "ix_messages_room_id_id", ["room_id", "id", "sender_id", "deleted"], unique=False
        )
        batch_op.drop_index("ix_messages_dm_pair_id")
        batch_op.create_index(
            "ix_messages_dm_pair_id",
            ["dm_pair", "id", "sender_id", "deleted"],
            unique=False,
            sqlite_where=DM_PAIR_SET,
            postgresql_where=DM_PAIR_SET,
        )
    op.create_table(
        "room_mentions",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("room_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_room_mentions_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_mentions_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_room_mentions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "room_id", "message_id", name=op.f("pk_room_mentions")),
    )
    op.create_index(
        op.f("ix_room_mentions_message_id"), "room_mentions", ["message_id"], unique=False
    )
    op.create_table(
        "room_markers",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("room_id", ID, nullable=False),
        sa.Column("last_read", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_markers_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_room_markers_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "room_id", name=op.f("pk_room_markers")),
    )
    op.create_table(
        "direct_conversations",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("peer_id", ID, nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_read", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["peer_id"],
            ["users.id"],
            name=op.f("fk_direct_conversations_peer_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_direct_conversations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "peer_id", name=op.f("pk_direct_conversations")),
    )
    op.create_index(
        "ix_direct_conversations_user_id_last_id",
        "direct_conversations",
        ["user_id", "last_id"],
        unique=False,
    )
    op.create_table(
        "message_changes",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_message_changes_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_message_changes")),
    )
    op.create_table(
        "read_changes",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("room_id", ID, nullable=True),
        sa.Column("peer_id", ID, nullable=True),
        sa.Column("last_read", sa.BigInteger(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["peer_id"],
            ["users.id"],
            name=op.f("fk_read_changes_peer_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_read_changes_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_read_changes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_read_changes")),
    )
    _everything_read()
    if _is_sqlite():
        op.execute(FTS5_TABLE)
        for trigger in FTS5_TRIGGERS:
            op.execute(trigger)
        op.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
    else:
        _postgresql_search()


def _everything_read() -> None:
    """Markers for what exists: each member has read its rooms, each side its conversations."""
    op.execute(
        "INSERT INTO room_markers (user_id, room_id, last_read) "
        "SELECT ms.user_id, ms.room_id, "
        "COALESCE((SELECT MAX(m.id) FROM messages m WHERE m.room_id = ms.room_id), 0) "
        "FROM memberships ms"
    )
    # one side per row; notes to self (sender = recipient) have only the first
    op.execute(
        "INSERT INTO direct_conversations (user_id, peer_id, last_id, last_read) "
        "SELECT sender_id, recipient_id, MAX(id), MAX(id) FROM messages "
        "WHERE recipient_id IS NOT NULL AND sender_id IS NOT NULL GROUP BY sender_id, recipient_id"
    )
    op.execute(
        "INSERT INTO direct_conversations (user_id, peer_id, last_id, last_read) "
        "SELECT recipient_id, sender_id, MAX(id), MAX(id) FROM messages "
        "WHERE recipient_id IS NOT NULL AND sender_id IS NOT NULL "
        "AND recipient_id <> sender_id GROUP BY recipient_id, sender_id"
    )


def _postgresql_search() -> None:
    op.execute("ALTER TABLE messages ADD COLUMN search tsvector")
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, text FROM messages WHERE id > :last AND NOT deleted "
                "ORDER BY id LIMIT :n"
            ),
            {"last": last, "n": FILL_BATCH},
        ).all()
        if not rows:
            break
        bind.execute(
            sa.text("UPDATE messages SET search = CAST(:doc AS tsvector) WHERE id = :id"),
            [{"id": row.id, "doc": tsvector_literal(row.text)} for row in rows],
        )
        last = rows[-1].id
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search)")


def downgrade() -> None:
    if _is_sqlite():
        for name in ("update", "delete"):
            op.execute(f"DROP TRIGGER messages_fts_{name}")
        op.execute("DROP TABLE messages_fts")
    else:
        op.execute("DROP INDEX ix_messages_search")
        op.execute("ALTER TABLE messages DROP COLUMN search")
    op.drop_table("read_changes")
    op.drop_table("message_changes")
    op.drop_index("ix_direct_conversations_user_id_last_id", table_name="direct_conversations")
    op.drop_table("direct_conversations")
    op.drop_table("room_markers")
    op.drop_index(op.f("ix_room_mentions_message_id"), table_name="room_mentions")
    op.drop_table("room_mentions")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_dm_pair_id")
        batch_op.create_index(
            "ix_messages_dm_pair_id",
            ["dm_pair", "id"],
            unique=False,
            sqlite_where=DM_PAIR_SET,
            postgresql_where=DM_PAIR_SET,
        )
        batch_op.drop_index("ix_messages_room_id_id")
        batch_op.create_index("ix_messages_room_id_id", ["room_id", "id"], unique=False)
        batch_op.drop_column("deleted")
        batch_op.drop_column("edited_ms")
        batch_op.drop_column("mentions")
        batch_op.drop_column("reply_to")
