"""accounts number the changes of their profile, so a phone keeps the later of two

Two `PATCH /me` from two phones of one account at the same moment, through two processes, could
bring the account's phones their `me.updated` in the other order, and a phone kept the earlier
profile until its next `GET /me`. `users.profile_version` counts the changes (each takes the
account row in turn): `GET /me`, the `PATCH` answer and `me.updated` carry it.

Every existing account starts at 0. Adding a column with a constant default does not rewrite the
table on PostgreSQL 11 and later.

Revision ID: 0024_users_profile_version
Revises: 0023_devices_user_created
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_users_profile_version"
down_revision = "0023_devices_user_created"
branch_labels = None
depends_on = None

TABLE = "users"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(
            sa.Column("profile_version", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("profile_version")
