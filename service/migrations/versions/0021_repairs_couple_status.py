"""an index on `repairs (couple_id, status, created_at)`, for a page of one status

`GET /repairs?status=open` read the couple's conversations newest first through
`ix_repairs_couple_created` and threw away those of the other status: a couple with years of
resolved conversations and an open one from long ago read every conversation it ever had to
find it. This index finds a page of one status directly.

On PostgreSQL the index is built CONCURRENTLY, outside the migration's transaction.

Revision ID: 0021_repairs_couple_status
Revises: 0020_password_change_retry
Create Date: 2026-12-07
"""

from __future__ import annotations

from service.migrations.indexes import create_index, drop_index

revision = "0021_repairs_couple_status"
down_revision = "0020_password_change_retry"
branch_labels = None
depends_on = None

NAME, TABLE = "ix_repairs_couple_status_created", "repairs"
COLUMNS = ["couple_id", "status", "created_at"]


def upgrade() -> None:
    create_index(NAME, TABLE, COLUMNS)


def downgrade() -> None:
    drop_index(NAME, TABLE)
