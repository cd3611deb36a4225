"""exam sittings (seeded from flows/data/sittings.toml) and pending admin actions

Revision ID: 0002_exam_sittings
Revises: 0001_initial
Create Date: 2026-11-29 11:20:53.619097

The seed is the data file as it is when the migration runs; from then on admins keep the calendar in the
database (/sittings, `medlegal sittings`), and later edits of the file do not reach a migrated database.
"""

import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002_exam_sittings"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEED = Path(__file__).resolve().parents[2] / "flows" / "data" / "sittings.toml"


def _seed_rows() -> list[dict[str, Any]]:
    with SEED.open("rb") as fh:
        data = tomllib.load(fh)
    now = datetime.now(UTC)
    return [
        {
            "first_day": row["first_day"],
            "last_day": row["last_day"],
            "deadline": row.get("deadline"),
            "note": row.get("note", ""),
            "source": row.get("source", ""),
            "created_at": now,
            "updated_at": now,
        }
        for row in data.get("sittings", [])
    ]


def upgrade() -> None:
    sittings = op.create_table(
        "exam_sittings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("note", sa.String(length=300), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "deadline IS NULL OR deadline < first_day", name=op.f("ck_exam_sittings_deadline_before_window")
        ),
        sa.CheckConstraint("last_day >= first_day", name=op.f("ck_exam_sittings_window_order")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exam_sittings")),
    )
    with op.batch_alter_table("exam_sittings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exam_sittings_first_day"), ["first_day"], unique=False)

    op.create_table(
        "admin_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_admin_actions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_actions")),
    )
    with op.batch_alter_table("admin_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_actions_user_id"), ["user_id"], unique=False)

    rows = _seed_rows()
    if rows:
        op.bulk_insert(sittings, rows)


def downgrade() -> None:
    with op.batch_alter_table("admin_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_actions_user_id"))

    op.drop_table("admin_actions")
    with op.batch_alter_table("exam_sittings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exam_sittings_first_day"))

    op.drop_table("exam_sittings")
