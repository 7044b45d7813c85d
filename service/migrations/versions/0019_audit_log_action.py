"""an index on `ops_audit_log (action, id)`, for the latest entries of one action

The push page lists the pushes operators retried lately from the audit log's latest `push.retry`
entries. It read the log newest first and threw away every other entry (each operator sign-in,
each account lookup): with few retries, the whole log, which nothing ever shortens, on every
load of the page. This index finds an action's latest entries directly.

On PostgreSQL the index is built CONCURRENTLY, outside the migration's transaction.

Revision ID: 0019_audit_log_action
Revises: 0018_bids_couple_status
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from service.migrations.indexes import build_concurrently

revision = "0019_audit_log_action"
down_revision = "0018_bids_couple_status"
branch_labels = None
depends_on = None

NAME, TABLE, COLUMNS = "ix_ops_audit_log_action_id", "ops_audit_log", ["action", "id"]


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
