"""one line of history again: repairs, operators and insights

Revision ID: 0005_merge
Revises: 0003_repairs, 0003_operators, 0004_insights
Create Date: 2026-11-27
"""

from __future__ import annotations

revision = "0005_merge"
down_revision = ("0003_repairs", "0003_operators", "0004_insights")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
