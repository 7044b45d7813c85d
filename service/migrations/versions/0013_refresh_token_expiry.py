"""an index on `refresh_tokens.expires_at`, for the worker's deletion of expired tokens

Every refresh stores a new token and keeps the used one until it expires (a used token shown
again reveals a stolen one). Nothing deleted them, so the table grew by about a hundred rows a
day for every phone in use. The worker now deletes expired tokens, and the sessions left with
none, every hour (`accounts.prune_expired_sign_ins`); this index finds them.

On PostgreSQL the index is built CONCURRENTLY, outside the migration's transaction.

Revision ID: 0013_refresh_token_expiry
Revises: 0012_devices_sessions
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from service.migrations.indexes import build_concurrently

revision = "0013_refresh_token_expiry"
down_revision = "0012_devices_sessions"
branch_labels = None
depends_on = None

NAME, TABLE, COLUMNS = "ix_refresh_tokens_expires_at", "refresh_tokens", ["expires_at"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            build_concurrently(NAME, TABLE, COLUMNS)
        return
    op.create_index(NAME, TABLE, COLUMNS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(NAME, table_name=TABLE, postgresql_concurrently=True, if_exists=True)
        return
    op.drop_index(NAME, table_name=TABLE)
