"""Operators of the dashboard, their signed-in sessions, and the audit log of their actions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, JSONType, id_column, utcnow
from service.models.bids import Bid
from service.models.push import BigId


class Operator(Base):
    """A person who runs the service; never a member, never signs in to the API."""

    __tablename__ = "operators"

    id: Mapped[uuid.UUID] = id_column()
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]


class OperatorSession(Base):
    """One browser signed in to /ops; the cookie carries a random id, stored here only hashed."""

    __tablename__ = "operator_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One operator action: who did what to which target, and when (never any member's words)."""

    __tablename__ = "ops_audit_log"
    # The latest entries of one action (the push page's "recently retried") however long the log.
    __table_args__ = (Index("ix_ops_audit_log_action_id", "action", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    operator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("operators.id", ondelete="SET NULL"), index=True
    )
    # Kept when the operator account is gone, so the log still says who it was.
    operator_email: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# The dashboard's time-window figures read bids by creation time across all couples.
Index("ix_bids_created_at", Bid.created_at)
