"""Expiring bids: the overdue scan, the worker's expiry job, and expiring one bid."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from service.db import Busy, lock_unless_busy
from service.domain import bids as rules
from service.models import Bid, Couple
from service.services import events, push_outbox, scans
from service.services.bids.reading import present, wire


def overdue(now: datetime, batch: int) -> Select[uuid.UUID, uuid.UUID]:
    """The ids and couples of at most `batch` open bids whose time to live has passed, the
    longest overdue first: one ordered scan of `ix_bids_open_expiry` per open status, each
    stopping at `batch` (`scans.first_of_each`), however many bids are overdue (with 100,000,
    one `status IN (...)` condition took 63 ms, this 0.3; bench/RESULTS.md, "What changed" 36).

    On PostgreSQL a bid whose couple, or itself, another transaction holds is skipped (each
    row locked as it is read, until the look commits): it would be left for a later pass, and
    a batch of them taken first, pass after pass, kept every other overdue bid from expiring.
    """
    each = [
        select(Bid.id, Bid.couple_id, Bid.expires_at)
        .join(Couple, Couple.id == Bid.couple_id)
        .where(Bid.status == status, Bid.expires_at <= now)
        .order_by(Bid.expires_at)
        .with_for_update(of=(Bid, Couple), skip_locked=True)
        for status in rules.OPEN_STATUSES
    ]
    found = scans.first_of_each(each, batch, "overdue")
    return (
        select(found.c.id, found.c.couple_id)
        .order_by(found.c.expires_at)
        .limit(scans.literal_limit(batch))
    )


def expire_due(session: Session, now: datetime, batch: int = 200) -> int:
    """Expire open bids whose time to live has passed (worker job). Returns how many.

    Each bid in a transaction of its own that locks its couple, then the bid: the order in which
    requests lock them (`_visible`), so the worker never holds a bid that an answer waits for
    while it waits for that answer's couple. One whose couple or bid another transaction holds
    is left for a later pass (`overdue` skips it; `lock_unless_busy` if it was taken since):
    the pass goes on to the others and to the pushes. A bid of a couple that has ended expires
    silently: after an unpair nobody is told, and its stream is gone
    (`custody.forget_couple_history`).
    """
    due = session.execute(overdue(now, batch)).all()
    session.commit()
    expired = 0
    for bid_id, couple_id in due:
        try:
            couple = lock_unless_busy(session, Couple, couple_id)
            bid = lock_unless_busy(session, Bid, bid_id)
        except Busy:
            session.rollback()  # held by a request, or a transaction left open: a later pass
            continue

        # Another worker, or an answer, may have come first.
        if bid is not None and rules.overdue(bid.status, bid.expires_at, now):
            _expire(session, bid, couple, now)
            expired += 1
        session.commit()
    return expired


def _expire(session: Session, bid: Bid, couple: Couple | None, now: datetime) -> None:
    """Mark an overdue bid expired (at its `expires_at`, as reads showed it meanwhile) and
    withdraw its push; its couple (locked first) is told unless it has ended."""
    bid.status = "expired"
    bid.expired_at = bid.expires_at
    push_outbox.cancel(session, push_outbox.bid_push_of(bid.id))
    if couple is not None and couple.ended_at is None:
        events.record(session, couple, "bid.expired", wire(present(bid, now)))
