"""partial message indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 04:36:14.952039

Nearly every message is a room message with neither dm_pair nor file_id, so
the indexes on those columns now skip NULLs. Written by hand: autogenerate
does not compare an index's WHERE clause.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dm_pair_set = sa.text("dm_pair IS NOT NULL")
    file_id_set = sa.text("file_id IS NOT NULL")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_file_id"))
        batch_op.drop_index("ix_messages_dm_pair_id")
        batch_op.create_index(
            "ix_messages_dm_pair_id",
            ["dm_pair", "id"],
            unique=False,
            sqlite_where=dm_pair_set,
            postgresql_where=dm_pair_set,
        )
        batch_op.create_index(
            batch_op.f("ix_messages_file_id"),
            ["file_id"],
            unique=False,
            sqlite_where=file_id_set,
            postgresql_where=file_id_set,
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_file_id"))
        batch_op.drop_index("ix_messages_dm_pair_id")
        batch_op.create_index("ix_messages_dm_pair_id", ["dm_pair", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_file_id"), ["file_id"], unique=False)
