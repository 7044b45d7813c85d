"""Reading bids: the bid as GET and the wire show it, one bid, the couple's list."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.bids import BidSchema
from service.clock import clock
from service.domain import bids as rules
from service.domain.errors import NotFound
from service.models import Bid, BidResponse, Couple, User
from service.models.base import table
from service.services import pages, pairing

_bid_schema = BidSchema()
_VIEW_COLUMNS = [name for name in _bid_schema.fields if name in table(Bid).c]


@dataclass(frozen=True)
class Written:
    """A write's result: the bid as GET shows it, and whether this call created something."""

    bid: dict[str, Any]
    created: bool
    # The bid already dumped for the wire, when the write had to dump it anyway.
    wired: dict[str, Any] | None = None


def present(bid: Bid, now: datetime | None = None) -> dict[str, Any]:
    """The bid with its computed outcome, ready for `BidSchema` (REST dumps it itself)."""
    view = {column: getattr(bid, column) for column in _VIEW_COLUMNS}
    return _with_outcome(view, list(bid.responses), now or clock.now())


def _with_outcome(
    view: dict[str, Any], responses: list[BidResponse], now: datetime
) -> dict[str, Any]:
    facts = [rules.ResponseFact(r.kind, r.created_at, r.back_at) for r in responses]
    outcome = rules.outcome(view["status"], facts, now)
    view["responses"] = responses
    view["outcome"] = outcome
    view["turned_toward"] = (
        None if outcome in ("pending", "later_pending") else (rules.turned_toward(outcome))
    )
    return view


def wire(view: dict[str, Any]) -> dict[str, Any]:
    """The bid as the wire shows it (event data, socket acks)."""
    dumped: dict[str, Any] = _bid_schema.dump(view)
    return dumped


def get(session: Session, user: User, bid_id: uuid.UUID) -> dict[str, Any]:
    bid, _ = _visible(session, user, bid_id)
    return present(bid)


def list_for(
    session: Session,
    user: User,
    *,
    limit: int,
    before: str | None,
    status: str | None = None,
) -> dict[str, Any]:
    couple = pairing.require_couple(session, user)
    query = select(Bid).where(Bid.couple_id == couple.id)
    if status:
        query = query.where(Bid.status == status)
    if before:
        # One comparison of (created_at, id): ix_bids_couple_created_id (or its status's) starts
        # the page where the last one ended, rather than reading every newer bid first.
        query = query.where(pages.older_than_key(Bid, before))
    rows = list(
        session.scalars(query.order_by(Bid.created_at.desc(), Bid.id.desc()).limit(limit + 1))
    )
    now = clock.now()
    items = [present(bid, now) for bid in rows[:limit]]
    return {"items": items, "next": pages.next_of(rows, limit)}


def _visible(
    session: Session, user: User, bid_id: uuid.UUID, *, lock: bool = False
) -> tuple[Bid, Couple]:
    """The bid if it belongs to the caller's couple; 404 otherwise (never 403: no leaks)."""
    if user.couple_id is None:
        raise NotFound("No such bid.")
    couple = session.get(Couple, user.couple_id, with_for_update=lock)
    bid = session.get(Bid, bid_id, with_for_update=lock)
    if bid is None or couple is None or bid.couple_id != couple.id or couple.ended_at:
        raise NotFound("No such bid.")
    return bid, couple
