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
    with op.batch_alter_table("process_instances") as batch_op:
        batch_op.add_column(sa.Column("last_event_hash", sa.String(length=64), nullable=False, server_default=""))
    # The head of each instance's audit chain, so appending an event needs no SELECT of the last one.
    op.execute(
        "UPDATE process_instances SET last_event_hash = COALESCE((SELECT e.hash FROM events e"
        " WHERE e.instance_id = process_instances.id ORDER BY e.id DESC LIMIT 1), '')"
    )


def downgrade():
    with op.batch_alter_table("process_instances") as batch_op:
        batch_op.drop_column("last_event_hash")
