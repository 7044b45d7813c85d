"""bids, responses, push outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:38:13.580941
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bids',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('couple_id', sa.Uuid(), nullable=False),
    sa.Column('sender_id', sa.Uuid(), nullable=True),
    sa.Column('recipient_id', sa.Uuid(), nullable=True),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('note', sa.String(length=280), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reachable_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('responded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('response', sa.String(length=16), nullable=True),
    sa.Column('response_seconds', sa.Integer(), nullable=True),
    sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['couple_id'], ['couples.id'], name=op.f('fk_bids_couple_id_couples'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recipient_id'], ['users.id'], name=op.f('fk_bids_recipient_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sender_id'], ['users.id'], name=op.f('fk_bids_sender_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bids')),
    sa.UniqueConstraint('sender_id', 'client_id', name='uq_bids_sender_client')
    )
    with op.batch_alter_table('bids', schema=None) as batch_op:
        batch_op.create_index('ix_bids_couple_created', ['couple_id', 'created_at'], unique=False)
        batch_op.create_index('ix_bids_open_expiry', ['status', 'expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_bids_recipient_id'), ['recipient_id'], unique=False)

    op.create_table('push_jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('dedupe_key', sa.String(length=120), nullable=False),
    sa.Column('couple_id', sa.Uuid(), nullable=True),
    sa.Column('recipient_id', sa.Uuid(), nullable=False),
    sa.Column('cursor', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=80), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['couple_id'], ['couples.id'], name=op.f('fk_push_jobs_couple_id_couples'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recipient_id'], ['users.id'], name=op.f('fk_push_jobs_recipient_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_jobs')),
    sa.UniqueConstraint('dedupe_key', name='uq_push_jobs_dedupe_key')
    )
    with op.batch_alter_table('push_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_jobs_couple_id'), ['couple_id'], unique=False)
        batch_op.create_index('ix_push_jobs_due', ['state', 'available_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_push_jobs_recipient_id'), ['recipient_id'], unique=False)

    op.create_table('bid_responses',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('bid_id', sa.Uuid(), nullable=False),
    sa.Column('responder_id', sa.Uuid(), nullable=True),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('note', sa.String(length=280), nullable=True),
    sa.Column('back_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bid_id'], ['bids.id'], name=op.f('fk_bid_responses_bid_id_bids'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['responder_id'], ['users.id'], name=op.f('fk_bid_responses_responder_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bid_responses')),
    sa.UniqueConstraint('responder_id', 'client_id', name='uq_bid_responses_responder_client')
    )
    with op.batch_alter_table('bid_responses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bid_responses_bid_id'), ['bid_id'], unique=False)

    op.create_table('push_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('platform', sa.String(length=10), nullable=False),
    sa.Column('state', sa.String(length=14), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=True),
    sa.Column('last_error', sa.String(length=80), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_push_deliveries_device_id_devices'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['push_jobs.id'], name=op.f('fk_push_deliveries_job_id_push_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_deliveries')),
    sa.UniqueConstraint('job_id', 'device_id', name='uq_push_deliveries_job_device')
    )
    with op.batch_alter_table('push_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_deliveries_job_id'), ['job_id'], unique=False)

    op.create_table('push_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column('worker', sa.String(length=80), nullable=False),
    sa.Column('outcome', sa.String(length=14), nullable=False),
    sa.Column('error', sa.String(length=80), nullable=True),
    sa.Column('retry_after', sa.Double(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['push_deliveries.id'], name=op.f('fk_push_attempts_delivery_id_push_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_attempts'))
    )
    with op.batch_alter_table('push_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_attempts_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_push_attempts_finished_at'), ['finished_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('push_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_attempts_finished_at'))
        batch_op.drop_index(batch_op.f('ix_push_attempts_delivery_id'))

    op.drop_table('push_attempts')
    with op.batch_alter_table('push_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_deliveries_job_id'))

    op.drop_table('push_deliveries')
    with op.batch_alter_table('bid_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bid_responses_bid_id'))

    op.drop_table('bid_responses')
    with op.batch_alter_table('push_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_jobs_recipient_id'))
        batch_op.drop_index('ix_push_jobs_due')
        batch_op.drop_index(batch_op.f('ix_push_jobs_couple_id'))

    op.drop_table('push_jobs')
    with op.batch_alter_table('bids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bids_recipient_id'))
        batch_op.drop_index('ix_bids_open_expiry')
        batch_op.drop_index('ix_bids_couple_created')

    op.drop_table('bids')
