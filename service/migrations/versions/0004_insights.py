"""bid facts for insights, A.R.E. check-ins

Revision ID: 0004_insights
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_insights"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
DELIVERY_SECONDS = {
    "postgresql": "GREATEST(0, floor(extract(epoch FROM delivered_at - created_at)))::integer",
    "sqlite": (
        "MAX(0, CAST(ROUND((julianday(delivered_at) - julianday(created_at)) * 86400000) "
        "/ 1000 AS INTEGER))"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("bids") as batch:
        batch.add_column(sa.Column("first_response", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("back_at", TS, nullable=True))
        batch.add_column(sa.Column("toward_at", TS, nullable=True))
        batch.add_column(sa.Column("delivery_seconds", sa.Integer(), nullable=True))
    # Bids answered before these columns existed: their first response and promises.
    op.execute(
        "UPDATE bids SET first_response = (SELECT r.kind FROM bid_responses r "
        "WHERE r.bid_id = bids.id ORDER BY r.created_at LIMIT 1)"
    )
    op.execute(
        "UPDATE bids SET back_at = (SELECT r.back_at FROM bid_responses r "
        "WHERE r.bid_id = bids.id AND r.kind = 'later' ORDER BY r.created_at LIMIT 1), "
        "toward_at = (SELECT r.created_at FROM bid_responses r "
        "WHERE r.bid_id = bids.id AND r.kind = 'toward' ORDER BY r.created_at LIMIT 1)"
    )
    # And how long each took to reach the phone, in whole seconds as bids.acknowledge counts.
    seconds = DELIVERY_SECONDS[op.get_bind().dialect.name]
    op.execute(f"UPDATE bids SET delivery_seconds = {seconds} WHERE delivered_at IS NOT NULL")
    op.create_index("ix_bids_recipient_created", "bids", ["recipient_id", "created_at"])
    op.create_index("ix_bids_sender_created", "bids", ["sender_id", "created_at"])

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
    )
    op.create_index(op.f("ix_checkin_answers_round_id"), "checkin_answers", ["round_id"])
    op.create_index("ix_checkin_answers_user", "checkin_answers", ["user_id"])


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
