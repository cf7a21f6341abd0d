"""direct message inbox indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 08:30:00.000000

A user's direct messages across every conversation (`dm_history` without
`with`), found from the recipient's side and from the sender's. Partial, as
in 0003, so room messages cost these indexes nothing. Written by hand:
autogenerate does not compare an index's WHERE clause.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    is_direct = sa.text("recipient_id IS NOT NULL")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for side in ("recipient_id", "sender_id"):
            batch_op.create_index(
                f"ix_messages_dm_{side}",
                [side, "id"],
                unique=False,
                sqlite_where=is_direct,
                postgresql_where=is_direct,
            )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_dm_sender_id")
        batch_op.drop_index("ix_messages_dm_recipient_id")
