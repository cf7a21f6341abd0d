"""log positions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:00:00.000000

The log: every message and every join, part and topic change gets a
position from one counter (log_head), taken in the transaction that stores
it, so positions follow commit order without gaps. Nodes of a cluster (and
a single server's fan-out) deliver in position order and read any range
they missed. Existing messages get positions in id order; imported ones
(whatever a later `chatd import` adds) have none. The unique index is
partial and written by hand: autogenerate does not compare its WHERE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_head")),
    )
    op.create_table(
        "room_changes",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("room_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=True),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_changes_room_id_rooms")
        ),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_room_changes")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE messages SET position = numbered.n FROM "
        "(SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM messages) AS numbered "
        "WHERE messages.id = numbered.id"
    )
    op.execute("INSERT INTO log_head (id, position) SELECT 1, COUNT(*) FROM messages")
    logged = sa.text("position IS NOT NULL")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_position",
            ["position"],
            unique=True,
            sqlite_where=logged,
            postgresql_where=logged,
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_position")
        batch_op.drop_column("position")
    op.drop_table("room_changes")
    op.drop_table("log_head")
