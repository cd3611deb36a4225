"""indexes the export's GROUP BY reads: latest completed flow per user, latest recommendation per flow, and poll
votes per poll and day

Revision ID: 0007_export_indexes
Revises: 0006_processed_updates
Create Date: 2026-11-29 15:30:00.000000

Each covers its query's columns, so the database answers from the index alone (db/export_counts.py).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_export_indexes"
down_revision: str | None = "0006_processed_updates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("flow_sessions", "ix_flow_sessions_status_user_id_id", ["status", "user_id", "id"]),
    ("recommendations", "ix_recommendations_session_id_id", ["session_id", "id"]),
    ("poll_votes", "ix_poll_votes_poll_id_answered_on", ["poll_id", "answered_on", "user_id", "option_key"]),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for table, name, _ in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
