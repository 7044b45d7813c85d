"""members change the email of their account, proven by a code mailed to the new address

`email_changes` holds at most one change waiting for its code per account (a new request
replaces it): the new address, the HMAC-SHA256 of the code under SECRET_KEY, when it expires,
how many codes were tried against it and when it changed the address. It goes with its
account.

Revision ID: 0029_email_changes
Revises: 0028_password_resets
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029_email_changes"
down_revision = "0028_password_resets"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "email_changes",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("new_email", sa.String(length=254), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_email_changes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_email_changes")),
    )


def downgrade() -> None:
    op.drop_table("email_changes")
