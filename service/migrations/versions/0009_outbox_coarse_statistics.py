"""coarse planner statistics for the rest of the push outbox's columns

Migration 0007 has autovacuum analyse the push outbox after every 2,000 changed rows, every
naptime on a busy deployment, and ANALYZE samples 300 rows per point of a column's statistics
target: 30,000 rows at PostgreSQL's default of 100, so on an outbox of tens of thousands of
jobs each ANALYZE reads nearly all of it. A target of 10 samples 3,000 rows. That is plenty
for these tables: every query on them goes through a primary key, a job id, or `state` (a few
values), and with either target the planner picks the same plan for each of them
(bench/RESULTS.md, "What changed" 16). ANALYZE of `push_jobs` then takes about a tenth as
long. Migration 0008's columns keep no statistics at all. PostgreSQL only.

Revision ID: 0009_outbox_coarse_statistics
Revises: 0008_outbox_statistics
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0009_outbox_coarse_statistics"
down_revision = "0008_outbox_statistics"
branch_labels = None
depends_on = None

TARGET = 10
COLUMNS = {
    "push_jobs": (
        "id",
        "kind",
        "dedupe_key",
        "couple_id",
        "recipient_id",
        "cursor",
        "urgent",
        "state",
        "available_at",
        "expires_at",
        "claimed_by",
        "claimed_until",
        "attempts",
        "created_at",
        "finished_at",
    ),
    "push_deliveries": (
        "id",
        "job_id",
        "device_id",
        "platform",
        "state",
        "attempts",
        "sent_at",
        "updated_at",
    ),
}


def _set_statistics(target: int) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {c} SET STATISTICS {target}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _set_statistics(TARGET)


def downgrade() -> None:
    _set_statistics(-1)  # back to default_statistics_target
