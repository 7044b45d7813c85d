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

from service.migrations.indexes import create_index, drop_index

revision = "0019_audit_log_action"
down_revision = "0018_bids_couple_status"
branch_labels = None
depends_on = None

NAME, TABLE, COLUMNS = "ix_ops_audit_log_action_id", "ops_audit_log", ["action", "id"]


def upgrade() -> None:
    create_index(NAME, TABLE, COLUMNS)


def downgrade() -> None:
    drop_index(NAME, TABLE)
