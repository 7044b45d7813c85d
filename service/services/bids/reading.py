"""Reading bids: the bid as GET and the wire show it, one bid, the couple's list."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Subquery, select
from sqlalchemy.orm import Session, aliased

from schemas.bids import BidSchema
from service.clock import clock
from service.domain import bids as rules
from service.domain.errors import NotFound
from service.models import Bid, BidResponse, Couple, User
from service.models.base import table
from service.services import pages, pairing, scans

_bid_schema = BidSchema()
_VIEW_COLUMNS = [name for name in _bid_schema.fields if name in table(Bid).c]
_NEWEST_FIRST = (Bid.created_at.desc(), Bid.id.desc())


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
    if rules.overdue(view["status"], view["expires_at"], now):
        # Over at its expires_at, as the worker will mark it (`expiry._expire`): shown so now.
        view["status"], view["expired_at"] = "expired", view["expires_at"]
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
    now = clock.now()
    query = select(Bid).where(Bid.couple_id == couple.id)
    if before:
        # One comparison of (created_at, id): ix_bids_couple_created_id (or its status's) starts
        # the page where the last one ended, rather than reading every newer bid first.
        query = query.where(pages.older_than_key(Bid, before))
    if status == "expired":
        page = aliased(Bid, _expired_page(query, now, limit + 1))
        query = select(page).order_by(page.created_at.desc(), page.id.desc())
    else:
        if status:
            # An open bid past its expires_at is expired, marked yet or not (`present`).
            query = query.where(Bid.status == status)
        if status in rules.OPEN_STATUSES:
            query = query.where(Bid.expires_at > now)
        query = query.order_by(*_NEWEST_FIRST)
    rows = list(session.scalars(query.limit(limit + 1)))
    items = [present(bid, now) for bid in rows[:limit]]
    return {"items": items, "next": pages.next_of(rows, limit)}


def _expired_page(query: Select[Bid], now: datetime, most: int) -> Subquery:
    """The newest `most` bids of `query` that are expired: marked, or open and past their
    expires_at. One scan per status, each stopping at `most` (`scans.first_of_each`), as a
    page of another status reads: `status IN (...)` would read the couple's every expired bid
    and sort them."""
    marked = query.where(Bid.status == "expired")
    overdue = [
        query.where(Bid.status == status, Bid.expires_at <= now) for status in rules.OPEN_STATUSES
    ]
    each = [scan.order_by(*_NEWEST_FIRST) for scan in [marked, *overdue]]
    return scans.first_of_each(each, most, "expired_page")


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
