"""indexes ending with `(created_at, id)` for the newest-first lists, a page from where the last
one ended

`GET /bids`, `GET /repairs` and `GET /me/sessions` list newest first, ordered by `created_at`,
then id, a page at a time. The couples' indexes ended with `created_at`: PostgreSQL sorted each
page's ties on it, and at times read the rest of a long history (or of one status) and sorted
it, rather than a page. They end with `id` now, so a page is read in order from where the one
before it ended; the ones they replace are dropped once they are built. No index gave an
account's sessions in that order: PostgreSQL read every session the account had (each sign-in
this month that was not signed out) and sorted them, for every page. The new one holds the
sessions not ended only, the ones the list shows.

On PostgreSQL the indexes are built and dropped CONCURRENTLY, outside the migration's
transaction.

Revision ID: 0025_list_page_indexes
Revises: 0024_users_profile_version
Create Date: 2026-12-07
"""

from __future__ import annotations

from service.migrations.indexes import create_index, drop_index

revision = "0025_list_page_indexes"
down_revision = "0024_users_profile_version"
branch_labels = None
depends_on = None

SESSIONS = "ix_auth_sessions_user_live_created", "auth_sessions"
SESSION_COLUMNS = ["user_id", "created_at", "id"]
# (table, the new index, its columns, the index it replaces, that one's columns)
REPLACED = [
    (
        "bids",
        "ix_bids_couple_created_id",
        ["couple_id", "created_at", "id"],
        "ix_bids_couple_created",
        ["couple_id", "created_at"],
    ),
    (
        "bids",
        "ix_bids_couple_status_created_id",
        ["couple_id", "status", "created_at", "id"],
        "ix_bids_couple_status_created",
        ["couple_id", "status", "created_at"],
    ),
    (
        "repairs",
        "ix_repairs_couple_created_id",
        ["couple_id", "created_at", "id"],
        "ix_repairs_couple_created",
        ["couple_id", "created_at"],
    ),
    (
        "repairs",
        "ix_repairs_couple_status_created_id",
        ["couple_id", "status", "created_at", "id"],
        "ix_repairs_couple_status_created",
        ["couple_id", "status", "created_at"],
    ),
]


def upgrade() -> None:
    name, table = SESSIONS
    live = "revoked_at IS NULL"
    create_index(name, table, SESSION_COLUMNS, postgresql_where=live, sqlite_where=live)
    for table, new, columns, old, _ in REPLACED:
        create_index(new, table, columns)
        drop_index(old, table)


def downgrade() -> None:
    for table, new, _, old, columns in reversed(REPLACED):
        create_index(old, table, columns)
        drop_index(new, table)
    drop_index(*SESSIONS)
