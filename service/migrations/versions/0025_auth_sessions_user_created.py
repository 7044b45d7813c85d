"""an index on the live `auth_sessions (user_id, created_at, id)`, for an account's sessions

`GET /me/sessions` lists where an account is signed in, newest first, a page at a time. No index
gave them in that order: PostgreSQL read every session the account had (each sign-in this month
that was not signed out) and sorted them, for every page. This index gives a page from where the
one before it ended. It holds the sessions not ended only, the ones the list shows.

On PostgreSQL the index is built and dropped CONCURRENTLY, outside the migration's transaction.

Revision ID: 0025_auth_sessions_user_created
Revises: 0024_users_profile_version
Create Date: 2026-12-07
"""

from __future__ import annotations

from service.migrations.indexes import create_index, drop_index

revision = "0025_auth_sessions_user_created"
down_revision = "0024_users_profile_version"
branch_labels = None
depends_on = None

TABLE = "auth_sessions"
NAME, COLUMNS = "ix_auth_sessions_user_live_created", ["user_id", "created_at", "id"]


def upgrade() -> None:
    create_index(
        NAME,
        TABLE,
        COLUMNS,
        postgresql_where="revoked_at IS NULL",
        sqlite_where="revoked_at IS NULL",
    )


def downgrade() -> None:
    drop_index(NAME, TABLE)
