"""an index on `devices (user_id, active, updated_at)`, for an account's live devices

Registering a device found the account's active devices, to switch off those past the ones it
keeps, through `ix_devices_user_id`, reading every device the account ever had: years of
reinstalls leave hundreds, each switched off for good. The support page's latest switched-off
devices were found the same way. This index finds either kind directly, newest first. It leads
with `user_id`, so it also serves what `ix_devices_user_id` did (an account's devices, the
foreign key's cascade), which is dropped: left, PostgreSQL went on choosing it.

On PostgreSQL the indexes are built and dropped CONCURRENTLY, outside the migration's
transaction.

Revision ID: 0022_devices_user_active
Revises: 0021_repairs_couple_status
Create Date: 2026-12-07
"""

from __future__ import annotations

from service.migrations.indexes import create_index, drop_index

revision = "0022_devices_user_active"
down_revision = "0021_repairs_couple_status"
branch_labels = None
depends_on = None

TABLE = "devices"
NAME, COLUMNS = "ix_devices_user_active_updated", ["user_id", "active", "updated_at"]
OLD, OLD_COLUMNS = "ix_devices_user_id", ["user_id"]


def upgrade() -> None:
    create_index(NAME, TABLE, COLUMNS)
    drop_index(OLD, TABLE)


def downgrade() -> None:
    create_index(OLD, TABLE, OLD_COLUMNS)
    drop_index(NAME, TABLE)
