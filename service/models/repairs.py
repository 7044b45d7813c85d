"""Repair conversations, each partner's place in them, and their messages."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.models.base import Base, JSONType, id_column, utcnow


class Repair(Base):
    """One conversation about a rocky moment; `last_seq` is its gapless message counter."""

    __tablename__ = "repairs"
    __table_args__ = (
        UniqueConstraint("started_by", "client_id", name="uq_repairs_started_by_client"),
        # A page of the couple's conversations, newest first, from where the last one ended.
        Index("ix_repairs_couple_created_id", "couple_id", "created_at", "id"),
        # A page of one status (`GET /repairs?status=open`) without reading the whole history.
        Index("ix_repairs_couple_status_created_id", "couple_id", "status", "created_at", "id"),
        Index("ix_repairs_paused_until", "paused_until"),
    )

    id: Mapped[uuid.UUID] = id_column()
    couple_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("couples.id", ondelete="CASCADE"))
    started_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    client_id: Mapped[uuid.UUID]
    topic: Mapped[str | None] = mapped_column(String(200))
    bid_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bids.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The last seq handed out (gapless counter, taken with UPDATE ... RETURNING).
    last_seq: Mapped[int] = mapped_column(default=0)
    # A break while flooded: until when, who asked, and how many breaks so far (reminder keys).
    paused_until: Mapped[datetime | None]
    paused_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    pause_count: Mapped[int] = mapped_column(default=0)
    resolved_at: Mapped[datetime | None]

    partners: Mapped[list[RepairPartner]] = relationship(
        back_populates="repair", order_by="RepairPartner.user_id", lazy="selectin"
    )


class RepairPartner(Base):
    """One partner's place in a conversation: how far they have read, whether they feel heard."""

    __tablename__ = "repair_partners"

    repair_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("repairs.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    last_read_seq: Mapped[int] = mapped_column(default=0)
    # When this partner said they feel heard.
    resolved_at: Mapped[datetime | None]

    repair: Mapped[Repair] = relationship(back_populates="partners")


class RepairMessage(Base):
    """What one partner wrote; ordered by `seq`, never by the phone's `written_at`."""

    __tablename__ = "repair_messages"
    __table_args__ = (
        UniqueConstraint("repair_id", "seq", name="uq_repair_messages_repair_seq"),
        UniqueConstraint("author_id", "client_id", name="uq_repair_messages_author_client"),
    )

    id: Mapped[uuid.UUID] = id_column()
    repair_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("repairs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    # The words belong to their author: deleting the account deletes them.
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[uuid.UUID]
    body: Mapped[str] = mapped_column(Text)
    step: Mapped[str | None] = mapped_column(String(24))
    emotions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # When the phone says it was written (perhaps offline); shown, never used for order.
    written_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
