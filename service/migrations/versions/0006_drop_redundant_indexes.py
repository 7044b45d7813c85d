"""drop two indexes that a composite index already serves

`ix_bids_recipient_id` is the leading column of `ix_bids_recipient_created`, and
`ix_push_deliveries_job_id` of `uq_push_deliveries_job_device`: every lookup (and every foreign
key's cascade) by those columns uses the composite, while each new bid and each delivery paid
for one more index entry.

On PostgreSQL they are dropped (and, downgrading, built) CONCURRENTLY, outside the migration's
transaction: a plain DROP INDEX takes the table's ACCESS EXCLUSIVE lock, and the migrations after
it kept it until they committed, every request on bids and push deliveries waiting meanwhile.

Revision ID: 0006_drop_redundant_indexes
Revises: 0005_merge
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from service.migrations.indexes import create_indexes

revision = "0006_drop_redundant_indexes"
down_revision = "0005_merge"
branch_labels = None
depends_on = None


INDEXES = {
    "ix_bids_recipient_id": ("bids", "recipient_id"),
    "ix_push_deliveries_job_id": ("push_deliveries", "job_id"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, (table, _) in INDEXES.items():
                op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        return
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    create_indexes(INDEXES)
