"""The push outbox: work written with each change, claimed and delivered by the worker."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, JSONType, utcnow

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# The largest id a BigId column holds (both are 64-bit): a larger one names no row, and
# PostgreSQL and SQLite refuse it as a parameter.
BIG_ID_MAX = 2**63 - 1


class PushJob(Base):
    """One notification for one person (fanned out to their devices when sent)."""

    __tablename__ = "push_jobs"
    __table_args__ = (
        Index("ix_push_jobs_due", "state", "available_at"),
        UniqueConstraint("dedupe_key", name="uq_push_jobs_dedupe_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # What the push is about: "bid.created", "repair.message", "repair.reminder", ...
    kind: Mapped[str] = mapped_column(String(40))
    dedupe_key: Mapped[str] = mapped_column(String(120))
    couple_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("couples.id", ondelete="CASCADE"), index=True
    )
    recipient_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    cursor: Mapped[int | None]
    # Everything the payload builder needs, fixed when the change happened.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    urgent: Mapped[bool] = mapped_column(default=True)
    # pending -> claimed -> done | dead
    state: Mapped[str] = mapped_column(String(12), default="pending")
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class PushDelivery(Base):
    """The job's delivery to one device; `sent` only once FCM accepted it."""

    __tablename__ = "push_deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "device_id", name="uq_push_deliveries_job_device"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Indexed by uq_push_deliveries_job_device (its leading column).
    job_id: Mapped[int] = mapped_column(ForeignKey("push_jobs.id", ondelete="CASCADE"))
    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(10))
    # pending | sent | unregistered | invalid | failed | dead | skipped (device disabled or moved)
    state: Mapped[str] = mapped_column(String(14), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(String(80))
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PushAttempt(Base):
    """Every try, for operators: what was sent, when, and what FCM answered."""

    __tablename__ = "push_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("push_deliveries.id", ondelete="CASCADE"), index=True
    )
    worker: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(14))
    error: Mapped[str | None] = mapped_column(String(80))
    retry_after: Mapped[float | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
