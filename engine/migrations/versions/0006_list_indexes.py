"""list indexes: keyset order with id, claimable order, open-work counts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 00:30:00

The lists' sort keys get `id` (keyset pagination continues after (started_at, id)); the
claimable list gets a partial index of open, unassigned tasks in inbox order; the summary
and dashboard count open work from a partial covering index of open tasks and count
instances per status and process from an index, not from the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CLAIMABLE = "status = 'open' AND assignee IS NULL"
OPEN = "status = 'open'"


def _partial(where: str) -> dict:
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade():
    op.drop_index("ix_instance_key_status_started", table_name="process_instances")
    op.create_index(
        "ix_instance_key_status_started", "process_instances", ["process_key", "status", "started_at", "id"]
    )
    op.drop_index("ix_instance_started", table_name="process_instances")
    op.create_index("ix_instance_started", "process_instances", ["started_at", "id"])
    op.create_index("ix_instance_status_started", "process_instances", ["status", "started_at", "id"])
    op.drop_index("ix_instance_status_due", table_name="process_instances")
    op.create_index(
        "ix_instance_status_key_due", "process_instances", ["status", "process_key", "due_at", "id"]
    )
    op.create_index(
        "ix_task_claimable_order",
        "human_tasks",
        [sa.text("(due_at IS NULL)"), "due_at", "id"],
        **_partial(CLAIMABLE),
    )
    op.create_index(
        "ix_task_open_key_due",
        "human_tasks",
        ["process_key", "due_at", "warn_at", "assignee", "instance_id", "id"],
        **_partial(OPEN),
    )


def downgrade():
    op.drop_index("ix_task_open_key_due", table_name="human_tasks")
    op.drop_index("ix_task_claimable_order", table_name="human_tasks")
    op.drop_index("ix_instance_status_key_due", table_name="process_instances")
    op.create_index("ix_instance_status_due", "process_instances", ["status", "due_at"])
    op.drop_index("ix_instance_status_started", table_name="process_instances")
    op.drop_index("ix_instance_started", table_name="process_instances")
    op.create_index("ix_instance_started", "process_instances", ["started_at"])
    op.drop_index("ix_instance_key_status_started", table_name="process_instances")
    op.create_index(
        "ix_instance_key_status_started", "process_instances", ["process_key", "status", "started_at"]
    )
