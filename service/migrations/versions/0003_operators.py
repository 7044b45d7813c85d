"""operators, their sessions, the audit log; bids by creation time

On PostgreSQL the bids' index is built CONCURRENTLY, outside the migration's transaction, so bids
keep being written meanwhile; the tables before it are created only if missing, so an upgrade
whose build failed finishes when rerun.

Revision ID: 0003_operators
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.migrations.indexes import build_concurrently
from sqlalchemy.dialects import postgresql

revision = "0003_operators"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_login_at", TS, nullable=True),
        sa.Column("disabled_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("email", name=op.f("uq_operators_email")),
        if_not_exists=True,
    )
    op.create_table(
        "operator_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_sessions_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_operator_sessions")),
        if_not_exists=True,
    )
    with op.batch_alter_table("operator_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operator_sessions_operator_id"),
            ["operator_id"],
            unique=False,
            if_not_exists=True,
        )
    op.create_table(
        "ops_audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("operator_id", sa.Uuid(), nullable=True),
        sa.Column("operator_email", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target_type", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_ops_audit_log_operator_id_operators"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_audit_log")),
        if_not_exists=True,
    )
    with op.batch_alter_table("ops_audit_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ops_audit_log_at"), ["at"], unique=False, if_not_exists=True
        )
        batch_op.create_index(
            batch_op.f("ix_ops_audit_log_operator_id"),
            ["operator_id"],
            unique=False,
            if_not_exists=True,
        )
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            build_concurrently("ix_bids_created_at", "bids", ["created_at"])
        return
    op.create_index("ix_bids_created_at", "bids", ["created_at"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(
                "ix_bids_created_at",
                table_name="bids",
                postgresql_concurrently=True,
                if_exists=True,
            )
    else:
        op.drop_index("ix_bids_created_at", table_name="bids")
    with op.batch_alter_table("ops_audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ops_audit_log_operator_id"))
        batch_op.drop_index(batch_op.f("ix_ops_audit_log_at"))
    op.drop_table("ops_audit_log")
    with op.batch_alter_table("operator_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_sessions_operator_id"))
    op.drop_table("operator_sessions")
    op.drop_table("operators")
