"""refresh tokens name the token their rotation issued, so a retried refresh can be answered

A refresh whose answer was lost (a tunnel, an app suspended mid-request, a proxy timeout) left
the phone holding a spent token, and its honest retry revoked the session as a theft would.
`refresh_tokens.successor_hash` names the token a rotation issued: a retry within
REFRESH_REUSE_GRACE_SECONDS, while that token is still unused, now gets a new pair and sets
that token aside (`accounts.refresh`).

The column is NULL for every existing token: a token rotated before the upgrade has no retry,
its reuse revokes the session as before. Adding a nullable column does not rewrite the table.

Revision ID: 0015_refresh_token_successor
Revises: 0014_checkin_client_id
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_refresh_token_successor"
down_revision = "0014_checkin_client_id"
branch_labels = None
depends_on = None

TABLE, COLUMN = "refresh_tokens", "successor_hash"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column(COLUMN, sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column(COLUMN)
