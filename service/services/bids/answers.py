"""The recipient's side of a bid: acknowledge it (delivered, seen), respond to it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain import bids as rules
from service.domain.errors import Conflict, Forbidden, invalid
from service.domain.quiet_hours import QuietHours
from service.models import BidResponse, User
from service.services import events, push_outbox
from service.services.bids.expiry import _expire
from service.services.bids.reading import Written, _visible, present, wire

LATER_MAX = timedelta(days=7)


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
        said = (earlier.bid_id, earlier.kind, earlier.note, earlier.back_at)
        if said != (bid.id, kind, note or None, back_at):
            # Another response (to another bid, or saying something else), not a retry.
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
        # The responder is the recipient: their quiet hours as they are now, already loaded.
        quiet = QuietHours.of(user.quiet_start, user.quiet_end, user.timezone)
        bid.awake_response_seconds = rules.awake_response_seconds(bid.reachable_at, now, quiet)
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
