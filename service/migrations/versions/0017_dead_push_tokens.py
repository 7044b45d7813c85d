"""push tokens FCM declared dead are remembered after their devices are deleted

A token FCM reported unregistered was refused when registered again only while its device row
was there: once the phone's user deleted the device (or the account), the same dead token was
taken again and every push to it failed again. `dead_push_tokens` keeps the SHA-256 of every
token FCM declared dead, filled here from the devices switched off as `unregistered`.

Revision ID: 0017_dead_push_tokens
Revises: 0016_bid_facts_filled
Create Date: 2026-12-06
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0017_dead_push_tokens"
down_revision = "0016_bid_facts_filled"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BATCH = 1000


def upgrade() -> None:
    dead = op.create_table(
        "dead_push_tokens",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_dead_push_tokens")),
    )
    assert dead is not None
    devices = sa.table(
        "devices",
        sa.column("push_token", sa.Text()),
        sa.column("disabled_reason", sa.String(40)),
        sa.column("updated_at", TS),
    )
    unregistered = sa.select(devices.c.push_token, devices.c.updated_at).where(
        devices.c.disabled_reason == "unregistered"
    )
    rows = op.get_bind().execute(unregistered).all()
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        op.bulk_insert(
            dead,
            [
                {
                    "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                    "reason": "unregistered",
                    "created_at": updated_at,
                }
                for token, updated_at in batch
            ],
        )


def downgrade() -> None:
    op.drop_table("dead_push_tokens")
