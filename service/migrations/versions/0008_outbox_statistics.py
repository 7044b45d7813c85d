"""no planner statistics for the push outbox's payload and error columns

migration 0007 has autovacuum analyse the push outbox after every 2,000 changed rows, which on a
busy deployment is every few seconds. Most of each ANALYZE went on columns no query filters,
joins, groups or sorts on: a job's JSON payload and the error texts (and a delivery's FCM
message id). Without statistics for those, ANALYZE of `push_jobs` takes about half as long and
of `push_deliveries` about three quarters (bench/RESULTS.md), and no plan changes: the planner
never estimates anything from them. PostgreSQL only.

Revision ID: 0008_outbox_statistics
Revises: 0007_queue_tables_vacuum
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0008_outbox_statistics"
down_revision = "0007_queue_tables_vacuum"
branch_labels = None
depends_on = None

COLUMNS = {
    "push_jobs": ("payload", "last_error"),
    "push_deliveries": ("message_id", "last_error"),
}


def _set_statistics(target: int) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {c} SET STATISTICS {target}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _set_statistics(0)


def downgrade() -> None:
    _set_statistics(-1)  # back to default_statistics_target
