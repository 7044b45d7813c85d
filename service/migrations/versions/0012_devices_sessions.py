"""devices belong to the sign-in session that registered them

A phone's push token was tied to the account only, so a phone that signed out (or whose
session was revoked: a reused refresh token, "sign out everywhere") kept receiving the
partner's bids on its lock screen. `devices.session_id` names the session that registered the
token last; when that session ends, the device is switched off (`signed_out`), and the phone's
next registration after it signs in again turns it back on. Devices registered before this
revision have no session until the phone registers again (each app start does): until then
only signing the account out everywhere, or disabling it, switches them off.

Devices that FCM refused with SENDER_ID_MISMATCH (a token of another Firebase project than the
credentials) were switched off as `unregistered`, which a registration is now refused for; those
whose deliveries still say so (kept PUSH_RETENTION_DAYS) become `sender_id_mismatch`, which
the phone's next registration turns on again.

The column is NULL for every existing row, so adding it and its foreign key does not rewrite
the table; on PostgreSQL its index is built CONCURRENTLY, outside the migration's transaction.

Revision ID: 0012_devices_sessions
Revises: 0011_drop_bids_sender_created
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.migrations.indexes import build_concurrently

revision = "0012_devices_sessions"
down_revision = "0011_drop_bids_sender_created"
branch_labels = None
depends_on = None

INDEX, TABLE, COLUMN = "ix_devices_session_id", "devices", "session_id"
FOREIGN_KEY = "fk_devices_session_id_auth_sessions"
OTHER_PROJECT = sa.text(
    "UPDATE devices SET disabled_reason = 'sender_id_mismatch' "
    "WHERE disabled_reason = 'unregistered' AND EXISTS (SELECT 1 FROM push_deliveries "
    "WHERE push_deliveries.device_id = devices.id "
    "AND push_deliveries.last_error = 'SENDER_ID_MISMATCH')"
)


def upgrade() -> None:
    # Both present if a failed index build came first (they were committed before it).
    postgresql = op.get_bind().dialect.name == "postgresql"
    added = sa.inspect(op.get_bind()).get_foreign_keys(TABLE)
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column(COLUMN, sa.Uuid(), nullable=True), if_not_exists=postgresql)
        if FOREIGN_KEY not in {key["name"] for key in added}:
            batch.create_foreign_key(
                FOREIGN_KEY, "auth_sessions", [COLUMN], ["id"], ondelete="SET NULL"
            )
    op.execute(OTHER_PROJECT)
    if postgresql:
        with op.get_context().autocommit_block():
            build_concurrently(INDEX, TABLE, [COLUMN])
        return
    op.create_index(INDEX, TABLE, [COLUMN])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True, if_exists=True)
    else:
        op.drop_index(INDEX, table_name=TABLE)
    op.execute(
        "UPDATE devices SET disabled_reason = 'unregistered' "
        "WHERE disabled_reason = 'sender_id_mismatch'"
    )
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(FOREIGN_KEY, type_="foreignkey")
        batch.drop_column(COLUMN)
