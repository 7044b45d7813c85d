"""Phones and browsers that receive pushes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, id_column, utcnow


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (
        # An account's devices; its active ones, or its latest switched off, without reading
        # every reinstall it ever had.
        Index("ix_devices_user_active_updated", "user_id", "active", "updated_at"),
        # An account's switched-off devices newest first, a page at a time from where the last
        # one ended (`GET /devices`; the live ones are few). Partial: a look for active devices
        # never takes it, reading every reinstall.
        Index(
            "ix_devices_user_off_created",
            "user_id",
            "created_at",
            "id",
            postgresql_where=text("active IS false"),
            sqlite_where=text("active IS 0"),
        ),
    )

    id: Mapped[uuid.UUID] = id_column()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(10))
    push_token: Mapped[str] = mapped_column(Text, unique=True)
    # The sign-in session that registered the token last: when it ends, pushes stop.
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="SET NULL"), index=True
    )
    app_version: Mapped[str | None] = mapped_column(String(40))
    locale: Mapped[str | None] = mapped_column(String(35))
    active: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeadPushToken(Base):
    """A push token FCM declared dead for good (unregistered, or not a token at all), kept
    after its device is deleted so that registering it again stays refused. Only its SHA-256
    is kept: the token itself is of no further use."""

    __tablename__ = "dead_push_tokens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
