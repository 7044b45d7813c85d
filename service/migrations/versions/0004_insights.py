"""bid facts for insights, A.R.E. check-ins

The bids already there get their facts from their responses and delivery. On PostgreSQL the
columns are added (no rewrite) and committed at once, then filled a batch of bids at a time and
the indexes built CONCURRENTLY, each step committed on its own: requests go on reading and
writing bids meanwhile (done under the ALTER TABLE's lock, 200,000 bids stopped them for 19 s).
Each step can run again, so an upgrade that failed midway finishes when rerun.

Revision ID: 0004_insights
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.migrations.indexes import build_concurrently

revision = "0004_insights"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BATCH = 5000
INDEXES = {
    "ix_bids_recipient_created": ["recipient_id", "created_at"],
    "ix_bids_sender_created": ["sender_id", "created_at"],
}
FIRST = (
    "(SELECT {} FROM bid_responses r WHERE r.bid_id = bids.id{} ORDER BY r.created_at LIMIT 1)"
)
LATER, TOWARD = " AND r.kind = 'later'", " AND r.kind = 'toward'"
# Bids answered or delivered before these columns existed: their first response, promises
# and time to reach the phone (whole seconds, as bids.acknowledge counts them).
FACTS = ", ".join(
    (
        "first_response = " + FIRST.format("r.kind", ""),
        "back_at = " + FIRST.format("r.back_at", LATER),
        "toward_at = " + FIRST.format("r.created_at", TOWARD),
        "delivery_seconds = {seconds}",
    )
)
DELIVERY_SECONDS = {
    "postgresql": "GREATEST(0, floor(extract(epoch FROM delivered_at - created_at)))::integer",
    "sqlite": (
        "MAX(0, CAST(ROUND((julianday(delivered_at) - julianday(created_at)) * 86400000) "
        "/ 1000 AS INTEGER))"
    ),
}
HEARD = "(responded_at IS NOT NULL OR delivered_at IS NOT NULL)"


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("first_response", sa.String(length=16), nullable=True),
        sa.Column("back_at", TS, nullable=True),
        sa.Column("toward_at", TS, nullable=True),
        sa.Column("delivery_seconds", sa.Integer(), nullable=True),
    ]


def _fill(bind: sa.Connection) -> None:
    """Fill the facts a batch of bids at a time (by id), each batch its own transaction."""
    facts = FACTS.format(seconds=DELIVERY_SECONDS[bind.dialect.name])
    first = sa.text("SELECT id FROM bids WHERE id > :after ORDER BY id LIMIT 1")
    batch_end = sa.text(
        "SELECT id FROM (SELECT id FROM bids WHERE id >= :start ORDER BY id LIMIT :batch) b "
        "ORDER BY id DESC LIMIT 1"
    )
    update = sa.text(f"UPDATE bids SET {facts} WHERE id >= :start AND id <= :end AND {HEARD}")
    start = bind.scalar(sa.text("SELECT id FROM bids ORDER BY id LIMIT 1"))
    while start is not None:
        end = bind.scalar(batch_end, {"start": start, "batch": BATCH})
        bind.execute(update, {"start": start, "end": end})
        start = bind.scalar(first, {"after": end})


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        for column in _columns():
            op.add_column("bids", column, if_not_exists=True)
    else:
        with op.batch_alter_table("bids") as batch:
            for column in _columns():
                batch.add_column(column)
    _create_checkins()
    if not postgresql:
        facts = FACTS.format(seconds=DELIVERY_SECONDS["sqlite"])
        op.execute(f"UPDATE bids SET {facts} WHERE {HEARD}")
        for name, columns in INDEXES.items():
            op.create_index(name, "bids", columns)
        return
    with op.get_context().autocommit_block():
        _fill(op.get_bind())
        for name, columns in INDEXES.items():
            build_concurrently(name, "bids", columns)


def _create_checkins() -> None:
    op.create_table(
        "checkin_rounds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("couple_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("revealed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["couple_id"],
            ["couples.id"],
            name=op.f("fk_checkin_rounds_couple_id_couples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkin_rounds")),
        sa.UniqueConstraint("couple_id", "number", name="uq_checkin_rounds_couple_number"),
        if_not_exists=True,
    )
    op.create_table(
        "checkin_answers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("round_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("accessible", sa.SmallInteger(), nullable=False),
        sa.Column("responsive", sa.SmallInteger(), nullable=False),
        sa.Column("engaged", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["checkin_rounds.id"],
            name=op.f("fk_checkin_answers_round_id_checkin_rounds"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_checkin_answers_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkin_answers")),
        sa.UniqueConstraint("round_id", "user_id", name="uq_checkin_answers_round_user"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_checkin_answers_round_id"), "checkin_answers", ["round_id"], if_not_exists=True
    )
    op.create_index("ix_checkin_answers_user", "checkin_answers", ["user_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_table("checkin_answers")
    op.drop_table("checkin_rounds")
    op.drop_index("ix_bids_sender_created", "bids")
    op.drop_index("ix_bids_recipient_created", "bids")
    with op.batch_alter_table("bids") as batch:
        batch.drop_column("delivery_seconds")
        batch.drop_column("toward_at")
        batch.drop_column("back_at")
        batch.drop_column("first_response")
