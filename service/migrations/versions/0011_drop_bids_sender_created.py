"""drop `ix_bids_sender_created`, which no query needs

Every new bid wrote an entry into each of the table's seven indexes. `ix_bids_sender_created`
(sender_id, created_at) served two things, both served as well by `uq_bids_sender_client`
(sender_id, client_id), which leads with the same column: the foreign key's `SET NULL` when an
account is deleted, and the account's data export, which reads one sender's bids and sorts
them (a few thousand rows at most). Bids by sender in a time range, the one query that would
need the pair, is not made anywhere: the couple's views use `ix_bids_couple_created`.

On PostgreSQL the index is dropped (and, downgrading, built) CONCURRENTLY, outside the
migration's transaction, so bids keep being written meanwhile.

Revision ID: 0011_drop_bids_sender_created
Revises: 0010_foreign_key_indexes
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from service.migrations.indexes import build_concurrently

revision = "0011_drop_bids_sender_created"
down_revision = "0010_foreign_key_indexes"
branch_labels = None
depends_on = None

NAME, TABLE, COLUMNS = "ix_bids_sender_created", "bids", ["sender_id", "created_at"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(NAME, table_name=TABLE, postgresql_concurrently=True, if_exists=True)
        return
    op.drop_index(NAME, table_name=TABLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            build_concurrently(NAME, TABLE, COLUMNS)
        return
    op.create_index(NAME, TABLE, COLUMNS)
