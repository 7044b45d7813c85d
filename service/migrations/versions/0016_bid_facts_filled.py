"""the insights facts of bids that were answered or delivered without them

Migration 0004 filled the facts insights are computed from (`first_response`, `back_at`,
`toward_at`, `delivery_seconds`) for the bids already there, except `delivery_seconds`: a
couple's median delivery time left out every bid delivered before it. And a bid answered by a
process of the release before 0004 after the migration had run (a rolling update keeps them
serving a while) got none of them: it counted as answered but never as turned toward. The
service sets them in the same statement as `delivered_at` and `responded_at`, so a bid with
either and not its facts is one of those; they are filled from its responses and delivery.

On PostgreSQL a batch of 5,000 bids at a time, each batch committed on its own, so requests go
on reading and writing bids meanwhile. Nothing to undo downgrading.

Revision ID: 0016_bid_facts_filled
Revises: 0015_refresh_token_successor
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_bid_facts_filled"
down_revision = "0015_refresh_token_successor"
branch_labels = None
depends_on = None

BATCH = 5000
FIRST = (
    "(SELECT {} FROM bid_responses r WHERE r.bid_id = bids.id{} ORDER BY r.created_at LIMIT 1)"
)
ANSWERED = "responded_at IS NOT NULL AND first_response IS NULL"
DELIVERED = "delivered_at IS NOT NULL AND delivery_seconds IS NULL"
DELIVERY_SECONDS = {
    "postgresql": "GREATEST(0, floor(extract(epoch FROM delivered_at - created_at)))::integer",
    "sqlite": (
        "MAX(0, CAST(ROUND((julianday(delivered_at) - julianday(created_at)) * 86400000) "
        "/ 1000 AS INTEGER))"
    ),
}


def _statements(dialect: str, within: str) -> list[sa.TextClause]:
    answered = ", ".join(
        (
            "first_response = " + FIRST.format("r.kind", ""),
            "back_at = " + FIRST.format("r.back_at", " AND r.kind = 'later'"),
            "toward_at = " + FIRST.format("r.created_at", " AND r.kind = 'toward'"),
        )
    )
    seconds = DELIVERY_SECONDS[dialect]
    return [
        sa.text(f"UPDATE bids SET {answered} WHERE {within}{ANSWERED}"),
        sa.text(f"UPDATE bids SET delivery_seconds = {seconds} WHERE {within}{DELIVERED}"),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        for statement in _statements(bind.dialect.name, ""):
            bind.execute(statement)
        return
    batch_end = sa.text(
        "SELECT id FROM (SELECT id FROM bids WHERE id >= :start ORDER BY id LIMIT :batch) b "
        "ORDER BY id DESC LIMIT 1"
    )
    after = sa.text("SELECT id FROM bids WHERE id > :end ORDER BY id LIMIT 1")
    statements = _statements("postgresql", "id >= :start AND id <= :end AND ")
    with op.get_context().autocommit_block():
        start = bind.scalar(sa.text("SELECT id FROM bids ORDER BY id LIMIT 1"))
        while start is not None:
            end = bind.scalar(batch_end, {"start": start, "batch": BATCH})
            for statement in statements:
                bind.execute(statement, {"start": start, "end": end})
            start = bind.scalar(after, {"end": end})


def downgrade() -> None:
    pass
