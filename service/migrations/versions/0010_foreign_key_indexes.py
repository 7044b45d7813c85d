"""an index for every foreign key that had none

PostgreSQL does not index a foreign key's column by itself, and deleting the row it refers to
then looks for the referring rows with a sequential scan, one per deleted row. Removing a
device (DELETE /devices/{id}, or an account's deletion, which removes its devices) scanned the
whole delivery history in `push_deliveries` this way, and the dashboard's support view did the
same for each device's last push (bench/RESULTS.md, "What changed" 17). An account's deletion
also scanned `invites` and `repairs` (their `used_by_id` and `paused_by` are set to NULL).
`repairs.bid_id` completes the set: tests/test_migrations.py holds every foreign key to one.

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction, so the
worker and the API keep writing while they build. A build that fails leaves an INVALID index
behind, which upgrading again drops and builds anew; the indexes already built are kept
(service/migrations/indexes.py).

Revision ID: 0010_foreign_key_indexes
Revises: 0009_outbox_coarse_statistics
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

from service.migrations.indexes import create_indexes

revision = "0010_foreign_key_indexes"
down_revision = "0009_outbox_coarse_statistics"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_push_deliveries_device_id": ("push_deliveries", "device_id"),
    "ix_invites_used_by_id": ("invites", "used_by_id"),
    "ix_repairs_bid_id": ("repairs", "bid_id"),
    "ix_repairs_paused_by": ("repairs", "paused_by"),
}


def upgrade() -> None:
    create_indexes(INDEXES)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, (table, _) in INDEXES.items():
                op.drop_index(
                    name, table_name=table, postgresql_concurrently=True, if_exists=True
                )
        return
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
