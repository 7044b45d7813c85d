"""check-in answers carry the phone's `client_id`, so a retried answer is not stored twice

`POST /checkins` had no `client_id`: a phone that lost the answer to its answer and tried again
was refused (409) while the round was open, and once the partner had answered and the round was
revealed, its retry opened the next round with the same scores. A retry now finds its answer by
`(user_id, client_id)` and returns the round again.

The column is NULL for every existing answer (NULLs do not collide in the unique index), so
adding it does not rewrite the table; on PostgreSQL the index is built CONCURRENTLY, outside the
migration's transaction.

Revision ID: 0014_checkin_client_id
Revises: 0013_refresh_token_expiry
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.migrations.indexes import build_concurrently

revision = "0014_checkin_client_id"
down_revision = "0013_refresh_token_expiry"
branch_labels = None
depends_on = None

INDEX, TABLE, COLUMNS = "uq_checkin_answers_user_client", "checkin_answers", ["user_id", "client_id"]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table(TABLE) as batch:  # present if a failed index build came first
        batch.add_column(sa.Column("client_id", sa.Uuid(), nullable=True), if_not_exists=postgresql)
    if postgresql:
        with op.get_context().autocommit_block():
            build_concurrently(INDEX, TABLE, COLUMNS, unique=True)
        return
    op.create_index(INDEX, TABLE, COLUMNS, unique=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True, if_exists=True)
    else:
        op.drop_index(INDEX, table_name=TABLE)
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("client_id")
