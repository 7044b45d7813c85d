"""drop two indexes that a composite index already serves

`ix_bids_recipient_id` is the leading column of `ix_bids_recipient_created`, and
`ix_push_deliveries_job_id` of `uq_push_deliveries_job_device`: every lookup (and every foreign
key's cascade) by those columns uses the composite, while each new bid and each delivery paid
for one more index entry.

Revision ID: 0006_drop_redundant_indexes
Revises: 0005_merge
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0006_drop_redundant_indexes"
down_revision = "0005_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bids") as batch_op:
        batch_op.drop_index("ix_bids_recipient_id")
    with op.batch_alter_table("push_deliveries") as batch_op:
        batch_op.drop_index("ix_push_deliveries_job_id")


def downgrade() -> None:
    with op.batch_alter_table("push_deliveries") as batch_op:
        batch_op.create_index("ix_push_deliveries_job_id", ["job_id"], unique=False)
    with op.batch_alter_table("bids") as batch_op:
        batch_op.create_index("ix_bids_recipient_id", ["recipient_id"], unique=False)
