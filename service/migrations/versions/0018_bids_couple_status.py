"""an index on `bids (couple_id, status, created_at)`, for a page of one status

`GET /bids?status=expired` (the missed bids) read the couple's bids newest first through
`ix_bids_couple_created` and threw away those of other statuses: a couple with years of answered
bids and no missed one read every bid it ever sent to say so, and PostgreSQL could prefer
`ix_bids_created_at`, every couple's bids. This index finds a page of one status directly.

On PostgreSQL the index is built CONCURRENTLY, outside the migration's transaction.

Revision ID: 0018_bids_couple_status
Revises: 0017_dead_push_tokens
Create Date: 2026-12-07
"""

from __future__ import annotations

from service.migrations.indexes import create_index, drop_index

revision = "0018_bids_couple_status"
down_revision = "0017_dead_push_tokens"
branch_labels = None
depends_on = None

NAME, TABLE = "ix_bids_couple_status_created", "bids"
COLUMNS = ["couple_id", "status", "created_at"]


def upgrade() -> None:
    create_index(NAME, TABLE, COLUMNS)


def downgrade() -> None:
    drop_index(NAME, TABLE)
