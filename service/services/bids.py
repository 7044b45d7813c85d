"""Bids: reach for the partner, acknowledge, respond, expire; each change is a couple event."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from schemas.bids import BidSchema
from service import metrics
from service.clock import clock
from service.db import finish
from service.domain import bids as rules
from service.domain.errors import Conflict, Forbidden, NotFound, invalid
from service.domain.quiet_hours import QuietHours
from service.models import Bid, BidResponse, Couple, User
from service.models.base import table
from service.services import bid_writes, events, pages, pairing, push_outbox, scans
from service.services.members import Member

_bid_schema = BidSchema()
_VIEW_COLUMNS = [name for name in _bid_schema.fields if name in table(Bid).c]
LATER_MAX = timedelta(days=7)


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


def send(
    session: Session,
    sender: Member,
    *,
    client_id: uuid.UUID,
    kind: str,
    note: str | None,
    ttl_seconds: int,
    recheck: Callable[[], Member] | None = None,
) -> Written:
    """Reach for the partner. A retry with the same `client_id` returns the first bid (200).

    With `recheck`, `sender` was remembered rather than looked up in this transaction: the
    write proves it still holds (`members.STILL_LIVE`) and, if it does not (or the bid is a
    retry), `recheck()` looks the member up and the send runs as usual.
    """
    request = _BidRequest(client_id, kind, note, ttl_seconds)
    if recheck is not None:
        written = _write(session, sender, request, proof=sender)
        if written is not None:
            return written
        session.rollback()
        sender = recheck()
    written = _write(session, sender, request)
    if written is not None:
        return written
    # A retry, even one racing its original: nothing was written, the first bid answers.
    session.rollback()
    existing = _by_client_id(session, sender.user_id, client_id)
    if existing is None:
        # Not a retry (a conflicting row is committed by now): the couple ended meanwhile.
        raise NotFound("You are not paired.")
    if sender.couple is None or existing.couple_id != sender.couple.id:
        # A bid of an earlier pairing: it, and the ex-partner's answers, are not the caller's.
        raise Conflict("This client_id was used for another bid: generate a new one.")
    return Written(present(existing), created=False)


@dataclass(frozen=True, slots=True)
class _BidRequest:
    client_id: uuid.UUID
    kind: str
    note: str | None
    ttl_seconds: int


def _write(
    session: Session, sender: Member, request: _BidRequest, proof: Member | None = None
) -> Written | None:
    """Write the bid, its event and its push job and commit; None if nothing was written.
    `proof`: the sender, not looked up in this transaction (`bid_writes.write_new`)."""
    couple, recipient = sender.couple, sender.partner
    if couple is None or recipient is None:
        raise NotFound("You are not paired.")
    now = clock.now()
    quiet = QuietHours.of(recipient.quiet_start, recipient.quiet_end, recipient.timezone)
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "couple_id": couple.id,
        "sender_id": sender.user_id,
        "recipient_id": recipient.id,
        "client_id": request.client_id,
        "kind": request.kind,
        "note": request.note or None,
        "status": "sent",
        "created_at": now,
        "reachable_at": rules.reachable_at(now, quiet),
        "expires_at": now + timedelta(seconds=request.ttl_seconds),
    }
    view = _with_outcome({column: row.get(column) for column in _VIEW_COLUMNS}, [], now)
    event: dict[str, Any] = {"type": "bid.created", "at": now, "data": wire(view)}
    job = push_outbox.bid_created(
        row, sender.display_name, recipient, recipient.notes_on_lock_screen
    )
    cursor = bid_writes.write_new(session, row, event, job, proof=proof)
    if cursor is None:
        return None
    events.announce(session, couple, cursor, event["type"], now, event["data"])
    finish(session)
    metrics.bid_created()
    return Written(view, created=True, wired=event["data"])


def acknowledge(session: Session, user: User, bid_id: uuid.UUID, step: str) -> Written:
    """The recipient's phone received (`delivered`) or opened (`seen`) the bid. Idempotent.

    An expired bid is over: acknowledging it changes nothing and emits nothing (a phone that
    was away finds `bid.created` before `bid.expired` in its sync, and acknowledges it). So is
    one past its `expires_at` that the worker has not marked yet: it expires now instead."""
    bid, couple = _visible(session, user, bid_id, lock=True)
    if user.id != bid.recipient_id:
        raise Forbidden("Only the partner who received the bid acknowledges it.")
    now = clock.now()
    changed = False
    if bid.status == "expired":
        session.rollback()
        return Written(present(bid), created=False)
    if rules.overdue(bid.status, bid.expires_at, now):
        # Past its time to live, not marked yet: it expires now, as the worker would expire it.
        _expire(session, bid, couple, now)
        session.commit()
        return Written(present(bid, now), created=False)
    if bid.delivered_at is None:
        bid.delivered_at = now
        bid.delivery_seconds = max(0, int((now - bid.created_at).total_seconds()))
        changed = True
    if step == "seen" and bid.seen_at is None:
        bid.seen_at = now
        changed = True
    if not changed:
        session.rollback()
        return Written(present(bid), created=False)
    if bid.status in ("sent", "delivered"):
        bid.status = "seen" if bid.seen_at else "delivered"
    view = present(bid, now)
    events.record(session, couple, f"bid.{step}", wire(view))
    session.commit()
    return Written(view, created=True)


def respond(
    session: Session,
    user: User,
    bid_id: uuid.UUID,
    *,
    client_id: uuid.UUID,
    kind: str,
    note: str | None,
    back_at: datetime | None,
) -> Written:
    bid, couple = _visible(session, user, bid_id, lock=True)
    earlier = session.scalar(
        select(BidResponse).where(
            BidResponse.responder_id == user.id, BidResponse.client_id == client_id
        )
    )
    if earlier is not None:
        if earlier.bid_id != bid.id:
            raise Conflict("This client_id was used for another response: generate a new one.")
        session.rollback()
        return Written(present(bid), created=False)
    if user.id != bid.recipient_id:
        raise Forbidden("You cannot answer your own bid.")
    now = clock.now()
    if rules.overdue(bid.status, bid.expires_at, now):
        # Past its time to live, not marked yet: it expires now, as the worker would expire it.
        _expire(session, bid, couple, now)
        session.commit()
    if bid.status == "expired":
        raise Conflict("This bid has expired; reach back with a bid of your own.")
    if any(r.kind == "toward" for r in bid.responses):
        raise Conflict("You have already turned toward this bid.")
    if kind == "later":
        if any(r.kind == "later" for r in bid.responses):
            raise Conflict("You already said when you will be back; answer with `toward`.")
        if back_at is None or back_at <= now:
            raise invalid("back_at", "back_at must be in the future.")
        if back_at > now + LATER_MAX:
            raise invalid("back_at", "back_at must be within 7 days.")
    response = BidResponse(
        bid_id=bid.id,
        responder_id=user.id,
        client_id=client_id,
        kind=kind,
        note=(note or None),
        back_at=back_at,
        created_at=now,
    )
    bid.responses.append(response)
    if bid.responded_at is None:
        bid.responded_at = now
        bid.response_seconds = rules.response_seconds(bid.reachable_at, now)
        bid.first_response = kind
    if kind == "later":
        bid.back_at = back_at
    else:
        bid.toward_at = now
    bid.response = kind
    bid.status = "answered"
    # A push still waiting (quiet hours) has nothing left to say.
    push_outbox.cancel(session, push_outbox.bid_push_of(bid.id))
    if bid.delivered_at is None:
        bid.delivered_at = now
        bid.delivery_seconds = max(0, int((now - bid.created_at).total_seconds()))
    bid.seen_at = bid.seen_at or now
    session.flush()
    view = present(bid, now)
    events.record(session, couple, "bid.answered", wire(view))
    session.commit()
    return Written(view, created=True)


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
        query = query.where(pages.older_than(Bid, before))
    rows = list(
        session.scalars(query.order_by(Bid.created_at.desc(), Bid.id.desc()).limit(limit + 1))
    )
    now = clock.now()
    items = [present(bid, now) for bid in rows[:limit]]
    return {"items": items, "next": pages.next_of(rows, limit)}


def overdue(now: datetime, batch: int) -> Select[uuid.UUID, uuid.UUID]:
    """The ids and couples of at most `batch` open bids whose time to live has passed, the
    longest overdue first: one ordered scan of `ix_bids_open_expiry` per open status, each
    stopping at `batch` (`scans.first_of_each`), however many bids are overdue (with 100,000,
    one `status IN (...)` condition took 63 ms, this 0.3; bench/RESULTS.md, "What changed" 36).
    """
    each = [
        select(Bid.id, Bid.couple_id, Bid.expires_at)
        .where(Bid.status == status, Bid.expires_at <= now)
        .order_by(Bid.expires_at)
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
    while it waits for that answer's couple. A bid of a couple that has ended expires silently:
    after an unpair nobody is told, and its stream is gone (`custody.forget_couple_history`).
    """
    due = session.execute(overdue(now, batch)).all()
    session.commit()
    expired = 0
    for bid_id, couple_id in due:
        couple = session.get(Couple, couple_id, with_for_update=True, populate_existing=True)
        bid = session.get(Bid, bid_id, with_for_update=True, populate_existing=True)
        # Another worker, or an answer, may have come first.
        if bid is not None and rules.overdue(bid.status, bid.expires_at, now):
            _expire(session, bid, couple, now)
            expired += 1
        session.commit()
    return expired


def _expire(session: Session, bid: Bid, couple: Couple | None, now: datetime) -> None:
    """Mark an overdue bid expired and withdraw its push; its couple (locked first) is told
    unless it has ended."""
    bid.status = "expired"
    bid.expired_at = now
    push_outbox.cancel(session, push_outbox.bid_push_of(bid.id))
    if couple is not None and couple.ended_at is None:
        events.record(session, couple, "bid.expired", wire(present(bid, now)))


def _by_client_id(session: Session, sender_id: uuid.UUID, client_id: uuid.UUID) -> Bid | None:
    return session.scalar(select(Bid).where(Bid.sender_id == sender_id, Bid.client_id == client_id))


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
