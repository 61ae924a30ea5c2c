"""instance event chain head

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 23:50:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "process_instances",
        sa.Column("last_event_hash", sa.String(length=64), nullable=False, server_default=""),
    )
    # The head of each instance's audit chain, so appending an event needs no SELECT of the last one.
    op.execute(
        "UPDATE process_instances SET last_event_hash = COALESCE((SELECT e.hash FROM events e"
        " WHERE e.instance_id = process_instances.id ORDER BY e.id DESC LIMIT 1), '')"
    )


def downgrade():
    # Native DROP COLUMN (PostgreSQL, SQLite >= 3.35), not a batch rebuild: rebuilding drops the
    # table, and with foreign keys on, ON DELETE CASCADE would take every task and event with it.
    op.execute("ALTER TABLE process_instances DROP COLUMN last_event_hash")
