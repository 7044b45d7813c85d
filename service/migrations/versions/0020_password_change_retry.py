"""accounts name their last password change and the session that made it, so it can be retried

A change of the password whose answer was lost (a tunnel, an app suspended mid-request) had
been made; the phone's retry of it, its current password now the old one, was told 422 "not
the account's password". `users.password_changed_at` and `users.password_changed_by` (the
sign-in session) let the same session's retry of the same change, soon after, be answered
204 again (`accounts.change_password`).

Both are NULL for every existing account: a change made before the upgrade has no retry.
Adding nullable columns does not rewrite the table.

Revision ID: 0020_password_change_retry
Revises: 0019_audit_log_action
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_password_change_retry"
down_revision = "0019_audit_log_action"
branch_labels = None
depends_on = None

TABLE = "users"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("password_changed_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("password_changed_by", sa.Uuid()))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("password_changed_by")
        batch.drop_column("password_changed_at")
