"""processed Telegram updates (duplicates are processed once) and the update that last moved a flow

Revision ID: 0006_processed_updates
Revises: 0003_outbox
Create Date: 2026-11-29 14:00:00.000000

`processed_updates` holds update ids only (no user id), pruned after a few days. `flow_sessions.moved_by_update`
lets a typed answer that arrives after a newer update be recognised as late.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_processed_updates"
down_revision: str | None = "0005_progress"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "processed_updates",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_processed_updates")),
    )
    with op.batch_alter_table("processed_updates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_processed_updates_day"), ["day"], unique=False)
    with op.batch_alter_table("flow_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moved_by_update", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flow_sessions", schema=None) as batch_op:
        batch_op.drop_column("moved_by_update")
    with op.batch_alter_table("processed_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processed_updates_day"))
    op.drop_table("processed_updates")
