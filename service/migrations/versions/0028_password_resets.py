"""accounts that forgot their password get a code by mail

`password_resets` holds at most one code per account (a new request replaces it), as the
HMAC-SHA256 of the code under SECRET_KEY, with when it expires, how many codes were tried against it and when it set
the password. It goes with its account.

Revision ID: 0028_password_resets
Revises: 0027_awake_response_seconds
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028_password_resets"
down_revision = "0027_awake_response_seconds"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "password_resets",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_password_resets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_password_resets")),
    )


def downgrade() -> None:
    op.drop_table("password_resets")
