"""bids keep the time their recipient was awake to answer

A bid that reached Ben at 21:50, ten minutes before his quiet hours, and that he answered at
07:05 took him 9 h 15 min by `response_seconds` (from `reachable_at`), and his insights named
him the withdrawing partner for a night's sleep. `awake_response_seconds` is `response_seconds`
less the recipient's quiet hours between `reachable_at` and the first response; the service sets
it with `response_seconds`, from the quiet hours and time zone the recipient keeps as they
answer, and the insights' response times are read from it.

The bids answered before it get their `response_seconds`: the quiet hours they were answered
under are not kept anywhere (the account keeps only its current ones, which may have changed
since), so their awake time cannot be recomputed honestly. The insights read
`coalesce(awake_response_seconds, response_seconds)`, so a bid answered meanwhile by a process
of the release before this one counts as such a bid does.

On PostgreSQL the column is added (nullable, no rewrite) and committed at once, then filled a
batch of 5,000 bids at a time, each batch committed on its own, so requests go on reading and
writing bids meanwhile; a rerun after a failure fills what is left.

Revision ID: 0027_awake_response_seconds
Revises: 0026_unicode_email_domains
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027_awake_response_seconds"
down_revision = "0026_unicode_email_domains"
branch_labels = None
depends_on = None

BATCH = 5000
COLUMN = "awake_response_seconds"
UNFILLED = f"response_seconds IS NOT NULL AND {COLUMN} IS NULL"
FILL = f"UPDATE bids SET {COLUMN} = response_seconds WHERE "


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        with op.batch_alter_table("bids") as batch:
            batch.add_column(sa.Column(COLUMN, sa.Integer(), nullable=True))
        op.execute(FILL + UNFILLED)
        return
    op.add_column("bids", sa.Column(COLUMN, sa.Integer(), nullable=True), if_not_exists=True)
    batch_end = sa.text(
        "SELECT id FROM (SELECT id FROM bids WHERE id >= :start ORDER BY id LIMIT :batch) b "
        "ORDER BY id DESC LIMIT 1"
    )
    after = sa.text("SELECT id FROM bids WHERE id > :end ORDER BY id LIMIT 1")
    fill = sa.text(FILL + f"id >= :start AND id <= :end AND {UNFILLED}")
    with op.get_context().autocommit_block():
        start = bind.scalar(sa.text("SELECT id FROM bids ORDER BY id LIMIT 1"))
        while start is not None:
            end = bind.scalar(batch_end, {"start": start, "batch": BATCH})
            bind.execute(fill, {"start": start, "end": end})
            start = bind.scalar(after, {"end": end})


def downgrade() -> None:
    with op.batch_alter_table("bids") as batch:
        batch.drop_column(COLUMN)
