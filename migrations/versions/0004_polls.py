"""community polls (seeded from flows/data/polls.toml), their answers and daily snapshots, and start links

Revision ID: 0004_polls
Revises: 0003_outbox
Create Date: 2026-11-29 14:00:00.000000

The seed is the data file as it is when the migration runs (as for the exam sittings); from then on admins keep
the polls in the database (/poll_new, /poll_close, `medlegal polls add|close`).
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from flows.polls import seed_polls

revision: str = "0004_polls"
down_revision: str | None = "0003_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _seed_rows() -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "key": poll.key,
            "question": poll.question,
            "options": [{"key": o.key, "label": o.label} for o in poll.options],
            "choice": poll.choice,
            "status": poll.status,
            "opens_on": poll.opens,
            "closes_on": poll.closes,
            "created_at": now,
            "updated_at": now,
        }
        for poll in seed_polls()
    ]


def upgrade() -> None:
    polls = op.create_table(
        "polls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("question", sa.String(length=300), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("choice", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("opens_on", sa.Date(), nullable=True),
        sa.Column("closes_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_polls")),
        sa.UniqueConstraint("key", name=op.f("uq_polls_key")),
    )
    op.create_table(
        "poll_votes",
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("option_key", sa.String(length=32), nullable=False),
        sa.Column("answered_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_id"], ["polls.id"], name=op.f("fk_poll_votes_poll_id_polls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_poll_votes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("poll_id", "user_id", "option_key", name=op.f("pk_poll_votes")),
    )
    with op.batch_alter_table("poll_votes", schema=None) as batch_op:
        batch_op.create_index("ix_poll_votes_poll_id_option_key", ["poll_id", "option_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_poll_votes_user_id"), ["user_id"], unique=False)

    op.create_table(
        "poll_snapshots",
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("taken_on", sa.Date(), nullable=False),
        sa.Column("respondents", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_id"], ["polls.id"], name=op.f("fk_poll_snapshots_poll_id_polls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("poll_id", name=op.f("pk_poll_snapshots")),
    )
    op.create_table(
        "community_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_sources")),
        sa.UniqueConstraint("code", name=op.f("uq_community_sources_code")),
    )
    op.create_table(
        "user_sources",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["community_sources.id"],
            name=op.f("fk_user_sources_source_id_community_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_sources_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_sources")),
    )
    with op.batch_alter_table("user_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_sources_source_id"), ["source_id"], unique=False)

    rows = _seed_rows()
    if rows:
        op.bulk_insert(polls, rows)


def downgrade() -> None:
    with op.batch_alter_table("user_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_sources_source_id"))
    op.drop_table("user_sources")
    op.drop_table("community_sources")
    op.drop_table("poll_snapshots")
    with op.batch_alter_table("poll_votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_poll_votes_user_id"))
        batch_op.drop_index("ix_poll_votes_poll_id_option_key")
    op.drop_table("poll_votes")
    op.drop_table("polls")
