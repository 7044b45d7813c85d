"""Couples, invites to form one, and the couple's gapless event stream."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, JSONType, id_column, utcnow


class Couple(Base):
    __tablename__ = "couples"

    id: Mapped[uuid.UUID] = id_column()
    # The two partners, kept after unpairing so each can still read their own history.
    partner_a_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL", use_alter=True), index=True
    )
    partner_b_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL", use_alter=True), index=True
    )
    paired_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    # The last cursor handed out in this couple's event stream (gapless counter row).
    last_cursor: Mapped[int] = mapped_column(default=0)

    def partner_of(self, user_id: uuid.UUID) -> uuid.UUID | None:
        return self.partner_b_id if self.partner_a_id == user_id else self.partner_a_id

    @property
    def partner_ids(self) -> tuple[uuid.UUID | None, uuid.UUID | None]:
        return (self.partner_a_id, self.partner_b_id)


class Invite(Base):
    __tablename__ = "invites"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    inviter_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )


class CoupleEvent(Base):
    """One change the couple can see; `cursor` is gapless per couple."""

    __tablename__ = "couple_events"

    couple_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("couples.id", ondelete="CASCADE"), primary_key=True
    )
    cursor: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
