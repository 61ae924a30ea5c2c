"""inbox order index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:50:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_task_inbox_order",
        "human_tasks",
        ["assignee", "status", sa.text("(due_at IS NULL)"), "due_at", "id"],
    )


def downgrade():
    op.drop_index("ix_task_inbox_order", table_name="human_tasks")
