"""an index on the switched-off `devices (user_id, created_at, id)`, for an account's list

`GET /devices` lists an account's devices newest first, a page at a time. No index gave them
in that order: PostgreSQL read every device the account ever had (years of reinstalls, each
switched off for good) and sorted them, for every page. This index gives the switched-off ones
of a page from where the one before it ended (the live ones are few, found through
`ix_devices_user_active_updated`). It holds the switched-off devices only: over every device,
PostgreSQL took it for an account's active devices too (a push's, a registration's), reading
every reinstall again.

On PostgreSQL the index is built and dropped CONCURRENTLY, outside the migration's transaction.

Revision ID: 0023_devices_user_created
Revises: 0022_devices_user_active
Create Date: 2026-12-07
"""

from __future__ import annotations

from service.migrations.indexes import create_index, drop_index

revision = "0023_devices_user_created"
down_revision = "0022_devices_user_active"
branch_labels = None
depends_on = None

TABLE = "devices"
NAME, COLUMNS = "ix_devices_user_off_created", ["user_id", "created_at", "id"]


def upgrade() -> None:
    create_index(
        NAME, TABLE, COLUMNS, postgresql_where="active IS false", sqlite_where="active IS 0"
    )


def downgrade() -> None:
    drop_index(NAME, TABLE)
