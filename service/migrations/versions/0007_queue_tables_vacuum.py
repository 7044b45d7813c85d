"""vacuum the push outbox tables after a fixed number of changes, not a share of the table

Every push job is inserted, claimed and finished: two dead row versions and, since its state
is indexed, two dead entries in each of its indexes. Until a vacuum removes them, the worker's
claim walks them on every pass, so its cost grows with the work done since the last vacuum.
PostgreSQL's default waits until a fifth of a table is dead, which on a table that keeps its
history means longer and longer between vacuums; these tables are vacuumed once about 2,000
rows have changed instead, whatever their size. PostgreSQL only; autovacuum must be on (it is
by default).

Revision ID: 0007_queue_tables_vacuum
Revises: 0006_drop_redundant_indexes
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0007_queue_tables_vacuum"
down_revision = "0006_drop_redundant_indexes"
branch_labels = None
depends_on = None

TABLES = ("push_jobs", "push_deliveries")
SETTINGS = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "2000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "2000",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    options = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET ({options})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(SETTINGS)})")
