"""A.R.E. check-ins: each partner answers; both see both only once both have answered."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, SmallInteger, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, id_column, utcnow


class CheckInRound(Base):
    __tablename__ = "checkin_rounds"
    __table_args__ = (
        UniqueConstraint("couple_id", "number", name="uq_checkin_rounds_couple_number"),
    )

    id: Mapped[uuid.UUID] = id_column()
    couple_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("couples.id", ondelete="CASCADE"))
    number: Mapped[int]
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    revealed_at: Mapped[datetime | None]


class CheckInAnswer(Base):
    __tablename__ = "checkin_answers"
    __table_args__ = (
        UniqueConstraint("round_id", "user_id", name="uq_checkin_answers_round_user"),
        Index("ix_checkin_answers_user", "user_id"),
        Index("uq_checkin_answers_user_client", "user_id", "client_id", unique=True),
    )

    id: Mapped[uuid.UUID] = id_column()
    round_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("checkin_rounds.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The phone's id for the write, so a retry finds its answer (NULL for answers of before 0014).
    client_id: Mapped[uuid.UUID | None]
    accessible: Mapped[int] = mapped_column(SmallInteger)
    responsive: Mapped[int] = mapped_column(SmallInteger)
    engaged: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
