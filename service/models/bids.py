"""Bids and the partner's responses to them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.models.base import Base, id_column, utcnow


class Bid(Base):
    __tablename__ = "bids"
    __table_args__ = (
        UniqueConstraint("sender_id", "client_id", name="uq_bids_sender_client"),
        # A page of the couple's bids, newest first, from where the last one ended (`pages`).
        Index("ix_bids_couple_created_id", "couple_id", "created_at", "id"),
        # A page of one status (`GET /bids?status=expired`) without reading the whole history.
        Index("ix_bids_couple_status_created_id", "couple_id", "status", "created_at", "id"),
        Index("ix_bids_open_expiry", "status", "expires_at"),
        Index("ix_bids_recipient_created", "recipient_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = id_column()
    couple_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("couples.id", ondelete="CASCADE"))
    # Indexed by uq_bids_sender_client (its leading column).
    sender_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Indexed by ix_bids_recipient_created (its leading column).
    recipient_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    client_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(280))
    status: Mapped[str] = mapped_column(String(16), default="sent")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the bid could first reach the recipient (end of their quiet hours, or created_at).
    reachable_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    seen_at: Mapped[datetime | None]
    responded_at: Mapped[datetime | None]
    response: Mapped[str | None] = mapped_column(String(16))
    response_seconds: Mapped[int | None]
    # `response_seconds` less the recipient's quiet hours between `reachable_at` and the first
    # response: the time they were awake to answer, what insights measure. Not on the wire.
    awake_response_seconds: Mapped[int | None]
    expired_at: Mapped[datetime | None]
    # Facts kept for insights, so figures are computed by the database without joins.
    first_response: Mapped[str | None] = mapped_column(String(16))
    back_at: Mapped[datetime | None]
    toward_at: Mapped[datetime | None]
    delivery_seconds: Mapped[int | None]

    responses: Mapped[list[BidResponse]] = relationship(
        back_populates="bid", order_by="BidResponse.created_at", lazy="selectin"
    )


class BidResponse(Base):
    __tablename__ = "bid_responses"
    __table_args__ = (
        UniqueConstraint("responder_id", "client_id", name="uq_bid_responses_responder_client"),
    )

    id: Mapped[uuid.UUID] = id_column()
    bid_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bids.id", ondelete="CASCADE"), index=True)
    responder_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    client_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(280))
    back_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    bid: Mapped[Bid] = relationship(back_populates="responses")
