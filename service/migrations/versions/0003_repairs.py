"""repair conversations, their partners and messages

Revision ID: 0003_repairs
Revises: 0002
Create Date: 2026-11-27 07:59:40.706352
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_repairs"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repairs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("couple_id", sa.Uuid(), nullable=False),
        sa.Column("started_by", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("bid_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_by", sa.Uuid(), nullable=True),
        sa.Column("pause_count", sa.Integer(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bid_id"], ["bids.id"], name=op.f("fk_repairs_bid_id_bids"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["couple_id"],
            ["couples.id"],
            name=op.f("fk_repairs_couple_id_couples"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["paused_by"],
            ["users.id"],
            name=op.f("fk_repairs_paused_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["started_by"],
            ["users.id"],
            name=op.f("fk_repairs_started_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repairs")),
        sa.UniqueConstraint("started_by", "client_id", name="uq_repairs_started_by_client"),
    )
    with op.batch_alter_table("repairs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_repairs_couple_created", ["couple_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_repairs_paused_until", ["paused_until"], unique=False)

    op.create_table(
        "repair_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("repair_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("step", sa.String(length=24), nullable=True),
        sa.Column(
            "emotions", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_repair_messages_author_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repair_id"],
            ["repairs.id"],
            name=op.f("fk_repair_messages_repair_id_repairs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repair_messages")),
        sa.UniqueConstraint("author_id", "client_id", name="uq_repair_messages_author_client"),
        sa.UniqueConstraint("repair_id", "seq", name="uq_repair_messages_repair_seq"),
    )
    op.create_table(
        "repair_partners",
        sa.Column("repair_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("last_read_seq", sa.Integer(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["repair_id"],
            ["repairs.id"],
            name=op.f("fk_repair_partners_repair_id_repairs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_repair_partners_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repair_id", "user_id", name=op.f("pk_repair_partners")),
    )
    with op.batch_alter_table("repair_partners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_repair_partners_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("repair_partners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_repair_partners_user_id"))

    op.drop_table("repair_partners")
    op.drop_table("repair_messages")
    with op.batch_alter_table("repairs", schema=None) as batch_op:
        batch_op.drop_index("ix_repairs_paused_until")
        batch_op.drop_index("ix_repairs_couple_created")

    op.drop_table("repairs")
